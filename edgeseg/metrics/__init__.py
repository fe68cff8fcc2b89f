from edgeseg.metrics.panoptic import PanopticEvaluator, PanopticScores, panoptic_from_labels, segments_from_table
from edgeseg.metrics.semantic import ConfusionMatrix, SemanticScores, boundary_band

__all__ = ["ConfusionMatrix", "PanopticEvaluator", "PanopticScores", "SemanticScores", "boundary_band", "panoptic_from_labels",
           "segments_from_table"]
