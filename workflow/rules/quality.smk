# Double labelling: a data-set-wide duplicate search, combined with the GDT residuals of the
# training jobs, checked against the planted truth when the data is synthetic.


rule duplicates:
    input:
        config=f"{RESULTS}/config.yaml",
        manifest=f"{RESULTS}/shards/manifest.tsv",
    output:
        pairs=f"{RESULTS}/quality/duplicates.parquet",
        stats=f"{RESULTS}/quality/duplicates.json",
    log:
        f"{RESULTS}/logs/duplicates.log",
    benchmark:
        f"{RESULTS}/benchmarks/duplicates.tsv"
    conda:
        "../../envs/errorless.yaml"
    threads: 2
    resources:
        mem_mb=DUP_MEM,
        runtime=DUP_MIN,
    params:
        shards=lambda wildcards, input: os.path.dirname(input.manifest),
    shell:
        "python -m errorless duplicates --config {input.config} --shards {params.shards} "
        "--out {output.pairs} --stats {output.stats} > {log} 2>&1"


rule double_labeling:
    input:
        unpack(double_labeling_inputs),
    output:
        table=report(
            f"{RESULTS}/double_labeling.csv",
            caption="../report/double_labeling.rst",
            category="3. Double labelling",
            labels={"table": "suspects (double_labeling.csv)"},
        ),
        parquet=f"{RESULTS}/double_labeling.parquet",
        figure=report(
            f"{RESULTS}/quality/suspects.png",
            caption="../report/suspects.rst",
            category="3. Double labelling",
            labels={"figure": "suspect thumbnails"},
        ),
        check=report(
            f"{RESULTS}/quality/planted_check.csv",
            caption="../report/planted_check.rst",
            category="3. Double labelling",
            labels={"table": "planted truth: precision and recall"},
        ),
        detail=f"{RESULTS}/quality/planted_pairs.csv",
    log:
        f"{RESULTS}/logs/double_labeling.log",
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        shards=lambda wildcards, input: os.path.dirname(input.manifest),
        planted=lambda wildcards, input: (
            f"--planted {input.planted}" if "planted" in input.keys() else ""
        ),
    shell:
        "python -m errorless double-labeling --config {input.config} "
        "--training {input.training} --duplicates {input.duplicates} --shards {params.shards} "
        "{params.planted} --out {output.parquet} --csv {output.table} --figure {output.figure} "
        "--check {output.check} --check-detail {output.detail} > {log} 2>&1"


# Single mislabelled images (README "Label issues"): every training image through the FNNs of
# the other submodule(s) of its module (out of sample), ranked with cleanlab; a third kind of
# evidence, kept apart from duplicates and GDT residuals. Needs modules.submodules >= 2.


rule out_of_sample:
    input:
        config=f"{RESULTS}/config.yaml",
        weights=f"{RESULTS}/weights.parquet",
        manifest=f"{RESULTS}/shards/manifest.tsv",
    output:
        table=f"{RESULTS}/quality/out_of_sample.parquet",
    log:
        f"{RESULTS}/logs/out_of_sample.log",
    benchmark:
        f"{RESULTS}/benchmarks/out_of_sample.tsv"
    conda:
        "../../envs/errorless.yaml"
    threads: 2
    resources:
        mem_mb=EVAL_MEM,
        runtime=EVAL_MIN,
    params:
        shards=lambda wildcards, input: os.path.dirname(input.manifest),
    shell:
        "python -m errorless out-of-sample --config {input.config} --weights {input.weights} "
        "--shards {params.shards} --out {output.table} > {log} 2>&1"


rule label_issues:
    input:
        unpack(label_issues_inputs),
    output:
        parquet=f"{RESULTS}/quality/label_issues.parquet",
        table=report(
            f"{RESULTS}/quality/label_issues.csv",
            caption="../report/label_issues.rst",
            category="3. Double labelling",
            labels={"table": "label issues: single mislabelled images (label_issues.csv)"},
        ),
        check=report(
            f"{RESULTS}/quality/label_issues_check.csv",
            caption="../report/label_issues_check.rst",
            category="3. Double labelling",
            labels={"table": "label issues: planted flips, precision and recall"},
        ),
        figure=report(
            f"{RESULTS}/quality/label_issues.png",
            caption="../report/label_issues_figure.rst",
            category="3. Double labelling",
            labels={"figure": "label issues thumbnails"},
        ),
    log:
        f"{RESULTS}/logs/label_issues.log",
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        shards=lambda wildcards, input: os.path.dirname(input.manifest),
        planted=lambda wildcards, input: (
            f"--planted {input.planted}" if "planted" in input.keys() else ""
        ),
    shell:
        "python -m errorless label-issues --config {input.config} --oos {input.oos} "
        "--shards {params.shards} {params.planted} --out {output.parquet} --csv {output.table} "
        "--check {output.check} --figure {output.figure} > {log} 2>&1"
