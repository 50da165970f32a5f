# Training evaluation (Table 2) and the majority-vote model evaluation (Tables 3-5),
# one evaluation job per source batch.


rule evaluate_training:
    input:
        training=f"{RESULTS}/training.parquet",
        weights=f"{RESULTS}/weights.parquet",
        manifest=f"{RESULTS}/shards/manifest.tsv",
    output:
        table=report(
            f"{RESULTS}/evaluation/training.csv",
            caption="../report/training.rst",
            category="1. Training",
            labels={"table": "training evaluation (Table 2)"},
        ),
        per_fnn=f"{RESULTS}/evaluation/training_fnn.csv",
        wheel=f"{RESULTS}/evaluation/wheel.npz",
    log:
        f"{RESULTS}/logs/evaluate_training.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_training.tsv"
    conda:
        "../../envs/errorless.yaml"
    threads: 2
    resources:
        mem_mb=EVAL_MEM,
        runtime=EVAL_MIN,
    params:
        settings=settings_json("weights", "features", "transform"),
    shell:
        "python -m errorless evaluate-training --settings {params.settings:q} "
        "--training {input.training} --weights {input.weights} --manifest {input.manifest} "
        "--out {output.table} --fnn-out {output.per_fnn} --wheel {output.wheel} > {log} 2>&1"


rule evaluate:
    input:
        unpack(evaluation_inputs),
    output:
        predictions=f"{RESULTS}/evaluation/predictions/{{batch}}.parquet",
        speed=f"{RESULTS}/evaluation/predictions/{{batch}}.speed.json",
    log:
        f"{RESULTS}/logs/evaluate/{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{batch}}.tsv"
    conda:
        "../../envs/errorless.yaml"
    threads: 2
    resources:
        mem_mb=EVAL_MEM,
        runtime=EVAL_MIN,
    params:
        settings=settings_json(
            "dataset",
            *DATA_SECTIONS,
            "featured_models",
            "evaluation",
            "features",
            "transform",
        ),
    shell:
        'python -m errorless evaluate --settings {params.settings:q} --device "$ERRORLESS_DEVICE" '
        "--batch {wildcards.batch} "
        "--weights {input.weights} --out {output.predictions} --speed {output.speed} > {log} 2>&1"


rule summarize:
    input:
        expand(
            f"{RESULTS}/evaluation/predictions/{{batch}}.parquet", batch=EVAL_BATCHES
        ),
    output:
        accuracy=report(
            f"{RESULTS}/evaluation/accuracy.csv",
            caption="../report/accuracy.rst",
            category="2. Model evaluation",
            labels={"table": "accuracy and Top-1 (Tables 3 and 5)"},
        ),
        per_batch=f"{RESULTS}/evaluation/accuracy_per_batch.csv",
        perfect=report(
            f"{RESULTS}/evaluation/perfect_labels.csv",
            caption="../report/perfect_labels.rst",
            category="2. Model evaluation",
            labels={"table": "perfect labels (Table 4)"},
        ),
        perfect_per_batch=f"{RESULTS}/evaluation/perfect_labels_per_batch.csv",
    log:
        f"{RESULTS}/logs/summarize.log",
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        out=lambda wildcards, output: os.path.dirname(output.accuracy),
    shell:
        "python -m errorless summarize --predictions {input} --out-dir {params.out} > {log} 2>&1"


rule confusion:
    input:
        unpack(confusion_inputs),
    output:
        counts=f"{RESULTS}/evaluation/confusion/counts.parquet",
        modules=f"{RESULTS}/evaluation/confusion/modules.parquet",
        pairs=f"{RESULTS}/evaluation/confusion/pairs.csv",
        summary=f"{RESULTS}/evaluation/confusion/summary.csv",
        labels=f"{RESULTS}/evaluation/confusion/labels.csv",
    log:
        f"{RESULTS}/logs/confusion.log",
    benchmark:
        f"{RESULTS}/benchmarks/confusion.tsv"
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        settings=settings_json("dataset", *DATA_SECTIONS, "modules", "confusion"),
        out=lambda wildcards, output: os.path.dirname(output.counts),
    shell:
        "python -m errorless confusion --settings {params.settings:q} "
        "--predictions {input.predictions} --out-dir {params.out} > {log} 2>&1"
