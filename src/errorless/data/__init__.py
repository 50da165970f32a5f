"""The data stage (workflow/rules/data.smk): loaders, generators, shards."""
