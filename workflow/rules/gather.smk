# Gather every job's weights and metrics into Parquet (one rule writes each table).


rule write_config:
    output:
        config=f"{RESULTS}/config.yaml",
    log:
        f"{RESULTS}/logs/write_config.log",
    localrule: True
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=LIGHT_MEM,
        runtime=LIGHT_MIN,
    params:
        # the experiment's settings: machine settings are not recorded, and changing them
        # does not rewrite this file
        settings=json.dumps(
            {k: v for k, v in config.items() if k not in MACHINE_KEYS}, sort_keys=True
        ),
    shell:
        "python -m errorless write-config --settings {params.settings:q} --out {output.config} > {log} 2>&1"


rule gather:
    input:
        weights=fnn_outputs("weights.npz"),
        metrics=fnn_outputs("metrics.json"),
    output:
        weights=f"{RESULTS}/weights.parquet",
        training=f"{RESULTS}/training.parquet",
    log:
        f"{RESULTS}/logs/gather.log",
    benchmark:
        f"{RESULTS}/benchmarks/gather.tsv"
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=GATHER_MEM,
        runtime=GATHER_MIN,
    shell:
        "python -m errorless gather --jobs {input.metrics} "
        "--weights-out {output.weights} --training-out {output.training} > {log} 2>&1"
