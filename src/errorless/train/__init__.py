"""The training stage (workflow/rules/train.smk): SGD, GDT, one training job."""
