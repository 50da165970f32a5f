"""The evaluation stage (workflow/rules/evaluate.smk): vote, Table 2, predictions, confusion."""
