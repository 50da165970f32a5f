# Double labelling: a data-set-wide duplicate search, combined with the GDT residuals of the
# training jobs, checked against the planted truth when the data is synthetic.


rule duplicates:
    input:
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
        settings=settings_json(
            "double_labeling.near_similarity",
            "double_labeling.neighbours",
            "double_labeling.verify_mb",
            "seed",
            "results",
        ),
        # a search stopped by its time limit goes on from here on the next attempt
        checkpoint=f"{RESULTS}/checkpoints/duplicates",
    shell:
        "python -m errorless duplicates --settings {params.settings:q} --manifest {input.manifest} "
        "--threads {threads} --out {output.pairs} --stats {output.stats} "
        "--checkpoint {params.checkpoint} > {log} 2>&1"


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
        settings=settings_json(
            "gdt.enabled",
            "features",
            "models.use",
            "models.replicates",
            "double_labeling.near_similarity",
            "dataset.format",
            "dataset.path",
            "results",
        ),
        planted=lambda wildcards, input: (
            f"--planted {input.planted}" if "planted" in input.keys() else ""
        ),
    shell:
        "python -m errorless double-labeling --settings {params.settings:q} "
        "--training {input.training} --duplicates {input.duplicates} --manifest {input.manifest} "
        "{params.planted} --out {output.parquet} --csv {output.table} --no-figure "
        "--check {output.check} --check-detail {output.detail} > {log} 2>&1"


# Single mislabelled images (docs/label-issues.md): out-of-sample probabilities of cross-fitted
# FNNs (one job per module and fold) and the votes of the other submodule(s) of each image's
# module, ranked with cleanlab; a third kind of evidence, kept apart from duplicates and GDT
# residuals.


rule cross_fit:
    input:
        manifest=f"{RESULTS}/shards/manifest.tsv",
    output:
        f"{RESULTS}/quality/crossfit/{{mod}}_{{fold}}.parquet",
    log:
        f"{RESULTS}/logs/cross_fit/{{mod}}_{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cross_fit/{{mod}}_{{fold}}.tsv"
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=crossfit_mem_mb,
        runtime=crossfit_runtime,
    params:
        settings=settings_json(
            "label_issues.crossfit",
            "features",
            "transform",
            "models.architectures",
            "models.use",
            "sgd",
            "seed",
        ),
    shell:
        "python -m errorless cross-fit --settings {params.settings:q} "
        '--device "$ERRORLESS_DEVICE" --manifest {input.manifest} --module {wildcards.mod} '
        "--fold {wildcards.fold} --threads {threads} --out {output} > {log} 2>&1"


rule out_of_sample:
    input:
        weights=f"{RESULTS}/weights.parquet",
        manifest=f"{RESULTS}/shards/manifest.tsv",
        crossfit=crossfit_tables(),
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
        settings=settings_json(
            "label_issues",
            "modules.submodules",
            "features",
            "transform",
            "evaluation.batch_size",
            "models.use",
            "models.replicates",
            "sgd.released_epochs",  # the default voting proto-model: T, else S
            "gdt.enabled",
        ),
    shell:
        "python -m errorless out-of-sample --settings {params.settings:q} "
        '--device "$ERRORLESS_DEVICE" --weights {input.weights} '
        "--manifest {input.manifest} --crossfit {input.crossfit} --out {output.table} > {log} 2>&1"


rule label_issues:
    input:
        unpack(label_issues_inputs),
    output:
        parquet=f"{RESULTS}/quality/label_issues.parquet",
        table=report(
            f"{RESULTS}/quality/label_issues.csv",
            caption="../report/label_issues.rst",
            category="3. Double labelling",
            labels={
                "table": "label issues: single mislabelled images (label_issues.csv)"
            },
        ),
        check=report(
            f"{RESULTS}/quality/label_issues_check.csv",
            caption="../report/label_issues_check.rst",
            category="3. Double labelling",
            labels={"table": "label issues: planted flips, precision and recall"},
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
        settings=settings_json(
            "label_issues",
            "modules.submodules",
            "models.use",
            "models.replicates",
            "sgd.released_epochs",  # the default proto-model: T, else S
            "gdt.enabled",
        ),
        planted=lambda wildcards, input: (
            f"--planted {input.planted}" if "planted" in input.keys() else ""
        ),
        batches=" ".join(TRAIN_BATCHES),
        labels=NUM_LABELS,
    shell:
        "python -m errorless label-issues --settings {params.settings:q} --oos {input.oos} "
        "{params.planted} --predictions {input.predictions} --batches {params.batches} "
        "--labels {params.labels} --out {output.parquet} --csv {output.table} "
        "--check {output.check} > {log} 2>&1"
