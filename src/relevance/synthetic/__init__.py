"""Synthetic stand-ins for what cannot be downloaded here: the generated demo, the data set built from the Google
Product Taxonomy files, their shared lexicon, and tiny random models. Only the composition root, the data sources
and `relevance.weights` import it; `model/` and `text/` never do (tests/test_boundaries.py)."""
