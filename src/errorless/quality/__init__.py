"""The data-quality stage (workflow/rules/quality.smk): duplicates, double labels, label issues."""
