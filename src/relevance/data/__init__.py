"""Records and their files: readers, cleaning, splits, the demo generator, the taxonomy builder, translations files."""
