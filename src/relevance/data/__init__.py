"""Records and their files: readers, cleaning, splits, translations files, and a run's training data."""
