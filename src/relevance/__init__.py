"""relevance: an experiment-tracked sweep harness for multilingual e-commerce relevance (QC and QI)."""

from relevance import schema
from relevance.errors import RelevanceError

schema.register()  # the configs' typed schemas, before Hydra composes any of them

__all__ = ["RelevanceError"]
__version__ = "0.1.0"
