"""relevance: an experiment-tracked sweep harness for multilingual e-commerce relevance (QC and QI)."""

from relevance.errors import RelevanceError

__all__ = ["RelevanceError"]
__version__ = "0.1.0"
