"""The report stage (workflow/rules/report.smk): figures and tables of the HTML report."""
