"""Evaluation: F1 and its floor, thresholds, the run's report (out-of-fold, dev, seen/unseen, refit) and its plots."""
