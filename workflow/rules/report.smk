# Figures and tables of the HTML report (`snakemake --report report.html` after a run),
# one rule per report section; every item is flagged with report(...) and a caption.

REPORT = f"{RESULTS}/report"


# The benchmark files of the benchmarked rules (run facts; they also order report_run last).
REPORT_BENCHMARKS = [
    f"{RESULTS}/benchmarks/modularize.tsv",
    f"{RESULTS}/benchmarks/gather.tsv",
    f"{RESULTS}/benchmarks/evaluate_training.tsv",
    *expand(f"{RESULTS}/benchmarks/evaluate/{{batch}}.tsv", batch=EVAL_BATCHES),
    *TRAIN_BENCHMARKS,  # train.smk: one per training job (per FNN or per shard group)
]


rule report_training:
    input:
        training=f"{RESULTS}/training.parquet",
        table=f"{RESULTS}/evaluation/training.csv",
        wheel=f"{RESULTS}/evaluation/wheel.npz",
    output:
        table=report(
            f"{REPORT}/training_table.html",
            caption="../report/report_training_table.rst",
            category="1. Training",
            labels={"table": "training evaluation, S / S′ / T side by side"},
        ),
        csv=f"{REPORT}/training_table.csv",
        grid=report(
            f"{REPORT}/error_free_grid.png",
            caption="../report/report_error_free_grid.rst",
            category="1. Training",
            labels={"figure": "error-free grid (features x partitions)"},
        ),
        gdt=report(
            f"{REPORT}/gdt_path.png",
            caption="../report/report_gdt_path.rst",
            category="1. Training",
            labels={"figure": "GDT lambda-path of one FNN"},
        ),
        wheel=report(
            f"{REPORT}/confusion_wheel.png",
            caption="../report/report_confusion_wheel.rst",
            category="1. Training",
            labels={"figure": "confusion wheel, SGD beside GDT (Figure 2)"},
        ),
    log:
        f"{RESULTS}/logs/report/training.log",
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        settings=settings_json("features"),
        out=lambda wildcards, output: os.path.dirname(output.table),
    shell:
        "python -m errorless report-figures --section training --out-dir {params.out} "
        "--settings {params.settings:q} --training {input.training} --training-table {input.table} "
        "--wheel {input.wheel} > {log} 2>&1"


rule report_evaluation:
    input:
        accuracy=f"{RESULTS}/evaluation/accuracy.csv",
        perfect=f"{RESULTS}/evaluation/perfect_labels.csv",
        perfect_per_batch=f"{RESULTS}/evaluation/perfect_labels_per_batch.csv",
    output:
        table=report(
            f"{REPORT}/accuracy_vs_features.html",
            caption="../report/report_accuracy_table.rst",
            category="2. Model evaluation",
            labels={"table": "accuracy and Top-1 vs features (table)"},
        ),
        csv=f"{REPORT}/accuracy_vs_features.csv",
        plot=report(
            f"{REPORT}/accuracy_vs_features.png",
            caption="../report/report_accuracy_plot.rst",
            category="2. Model evaluation",
            labels={"figure": "accuracy and Top-1 vs features (plot)"},
        ),
        perfect=report(
            f"{REPORT}/perfect_labels.html",
            caption="../report/report_perfect_labels.rst",
            category="2. Model evaluation",
            labels={"table": "perfect labels per batch and in every batch (table)"},
        ),
        perfect_plot=report(
            f"{REPORT}/perfect_labels.png",
            caption="../report/report_perfect_plot.rst",
            category="2. Model evaluation",
            labels={"figure": "perfect labels per batch (plot)"},
        ),
    log:
        f"{RESULTS}/logs/report/evaluation.log",
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        out=lambda wildcards, output: os.path.dirname(output.table),
    shell:
        "python -m errorless report-figures --section evaluation --out-dir {params.out} "
        "--accuracy {input.accuracy} --perfect {input.perfect} "
        "--perfect-per-batch {input.perfect_per_batch} > {log} 2>&1"


rule report_quality:
    input:
        unpack(report_quality_inputs),
    output:
        table=report(
            f"{REPORT}/suspects.html",
            caption="../report/report_suspects_table.rst",
            category="3. Double labelling",
            labels={"table": "suspects, ranked (readable table)"},
        ),
        check=report(
            f"{REPORT}/planted_check.html",
            caption="../report/report_planted_check.rst",
            category="3. Double labelling",
            labels={"table": "planted truth: precision and recall (readable table)"},
        ),
        suspects_figure=report(
            f"{RESULTS}/quality/suspects.png",
            caption="../report/suspects.rst",
            category="3. Double labelling",
            labels={"figure": "suspect thumbnails"},
        ),
        issues_figure=report(
            f"{RESULTS}/quality/label_issues.png",
            caption="../report/label_issues_figure.rst",
            category="3. Double labelling",
            labels={"figure": "label issues thumbnails"},
        ),
    log:
        f"{RESULTS}/logs/report/quality.log",
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        settings=settings_json("double_labeling.thumbnails"),
        planted=lambda wildcards, input: (
            f"--planted {input.planted}" if "planted" in input.keys() else ""
        ),
        out=lambda wildcards, output: os.path.dirname(output.table),
    shell:
        "python -m errorless report-figures --section quality --out-dir {params.out} "
        "--settings {params.settings:q} --suspects {input.suspects} "
        "--planted-check {input.check} --issues {input.issues} {params.planted} "
        "--manifest {input.manifest} --suspects-figure {output.suspects_figure} "
        "--issues-figure {output.issues_figure} > {log} 2>&1"


rule report_confusion:
    input:
        unpack(report_confusion_inputs),
    output:
        table=report(
            f"{REPORT}/confusion_pairs.html",
            caption="../report/report_confusion_pairs.rst",
            category="2. Model evaluation",
            subcategory="confusion",
            labels={"table": "confusion: most confused label pairs"},
        ),
        thumbnails=report(
            f"{REPORT}/confusion_pairs.png",
            caption="../report/report_confusion_thumbnails.rst",
            category="2. Model evaluation",
            subcategory="confusion",
            labels={"figure": "confusion: images behind the top pairs"},
        ),
        heatmaps=report(
            f"{REPORT}/confusion_modules.png",
            caption="../report/report_confusion_modules.rst",
            category="2. Model evaluation",
            subcategory="confusion",
            labels={"figure": "confusion: heatmap per module"},
        ),
        matrix=report(
            f"{REPORT}/confusion_module_matrix.png",
            caption="../report/report_confusion_module_matrix.rst",
            category="2. Model evaluation",
            subcategory="confusion",
            labels={"figure": "confusion: module x module"},
        ),
    log:
        f"{RESULTS}/logs/report/confusion.log",
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        confusion=lambda wildcards, input: os.path.dirname(input.counts),
        out=lambda wildcards, output: os.path.dirname(output.table),
    shell:
        "python -m errorless report-figures --section confusion --out-dir {params.out} "
        "--confusion {params.confusion} --manifest {input.manifest} "
        "--suspects {input.suspects} --issues {input.issues} > {log} 2>&1"


rule report_run:
    input:
        training=f"{RESULTS}/training.parquet",
        manifest=f"{RESULTS}/shards/manifest.tsv",
        benchmarks=REPORT_BENCHMARKS,
        # the other report sections first, so that their jobs are done when this one reads
        # the benchmark folder (it also counts benchmark files of rules not listed above)
        after=[
            f"{REPORT}/training_table.csv",
            f"{REPORT}/accuracy_vs_features.csv",
            f"{REPORT}/planted_check.html",
            f"{REPORT}/confusion_pairs.html",
        ],
    output:
        facts=report(
            f"{REPORT}/run_facts.html",
            caption="../report/report_run_facts.rst",
            category="4. Run",
            labels={"table": "run facts: data set, settings, jobs, compute time"},
        ),
        time=report(
            f"{REPORT}/compute_time.png",
            caption="../report/report_compute_time.rst",
            category="4. Run",
            labels={"figure": "compute time per phase"},
        ),
    log:
        f"{RESULTS}/logs/report/run.log",
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        settings=settings_json(
            "dataset",
            *DATA_SECTIONS,
            "models",
            "features",
            "featured_models",
            "sgd",
            "gdt",
            "seed",
        ),
        benchmarks=lambda wildcards, input: os.path.dirname(input.benchmarks[0]),
        out=lambda wildcards, output: os.path.dirname(output.facts),
    shell:
        "python -m errorless report-figures --section run --out-dir {params.out} "
        "--settings {params.settings:q} --training {input.training} --manifest {input.manifest} "
        "--benchmarks {params.benchmarks} > {log} 2>&1"


# Every figure and table of the report: the default target list adds these.
REPORT_TARGETS = [
    *rules.report_training.output,
    *rules.report_evaluation.output,
    *rules.report_quality.output,
    *rules.report_confusion.output,
    *rules.report_run.output,
]
