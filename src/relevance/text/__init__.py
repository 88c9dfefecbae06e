"""Model inputs from records: the one preprocessing path (clean, rewrite, format), prompt templates, translators."""
