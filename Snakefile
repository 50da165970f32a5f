# errorless: train image classifiers to zero training error (SGD + gradient descent tunneling)
# and report double-labelled data. See README.md; the method is in docs/method.md.
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")
# Deployment, in this one place: this checkout's src/, here and in every job (errorless.deploy;
# why not the installed package: docs/ARCHITECTURE.md, "Deployment").
sys.path.insert(0, f"{workflow.basedir}/src")
from errorless.deploy import use_checkout

use_checkout(f"{workflow.basedir}/src")
from errorless.config import check_yaml_file
from errorless.errors import ConfigError

try:  # Snakemake's own message for a broken config.yaml does not say which file
    check_yaml_file("config.yaml")
except ConfigError as e:
    raise WorkflowError(str(e))


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
