"""The logged model and what reads it: the typed bundle, the scorer (also the MLflow pyfunc), batch prediction and
submission files."""

from relevance.serving.scorer import RelevancePyfunc, RelevanceScorer

__all__ = ["RelevancePyfunc", "RelevanceScorer"]
