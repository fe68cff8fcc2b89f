from edgeseg.metrics.semantic import ConfusionMatrix, SemanticScores

__all__ = ["ConfusionMatrix", "SemanticScores"]
