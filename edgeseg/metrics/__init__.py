from edgeseg.metrics.panoptic import PanopticEvaluator, PanopticScores, segments_from_table
from edgeseg.metrics.semantic import ConfusionMatrix, SemanticScores

__all__ = ["ConfusionMatrix", "PanopticEvaluator", "PanopticScores", "SemanticScores", "segments_from_table"]
