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
