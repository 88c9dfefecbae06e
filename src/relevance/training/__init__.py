"""Training: a run's rows, one model trained, K-fold cross-validation, TAPT, the self-validation pass, and whether a
fold learned."""
