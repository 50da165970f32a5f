"""The gather stage (workflow/rules/gather.smk): per-job files into Parquet."""
