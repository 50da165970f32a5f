# errorless: train image classifiers to zero training error (SGD + gradient descent tunneling)
# and report double-labelled data. See README.md; the method is in ../shared/SPEC.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/gather.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/quality.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_targets(),
    localrule: True
