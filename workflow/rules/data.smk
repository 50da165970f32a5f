# Data: the synthetic generator (default config) and the modularize checkpoint.

DATA_MEM, DATA_MIN = scaled(4000, 30)


if FORMAT == "synthetic":

    rule synthesize:
        output:
            batches=expand(f"{DATA}/{{b}}", b=EVAL_BATCHES),
            planted=f"{DATA}/planted.csv",
        params:
            settings=settings_json("synthetic", "modules"),
            out=DATA,
        log:
            "logs/synthesize.log",
        threads: 1
        resources:
            mem_mb=DATA_MEM,
            runtime=DATA_MIN,
        conda:
            "../../envs/errorless.yaml"
        shell:
            "{ERRORLESS} synthesize --settings {params.settings:q} --out {params.out} > {log} 2>&1"


# A checkpoint: a shard whose content did not change keeps its bytes and mtime, so only the
# training jobs of changed modules rerun (the train rule reads shards through checkpoints.get()).
checkpoint modularize:
    input:
        data_inputs(),
    output:
        manifest=f"{RESULTS}/shards/manifest.tsv",
    params:
        settings=settings_json("dataset", "synthetic", "modules", "features"),
        out=f"{RESULTS}/shards",
    log:
        "logs/modularize.log",
    benchmark:
        "benchmarks/modularize.tsv"
    threads: 1
    resources:
        mem_mb=DATA_MEM,
        runtime=DATA_MIN,
    conda:
        "../../envs/errorless.yaml"
    shell:
        "{ERRORLESS} modularize --settings {params.settings:q} "
        "--out {params.out} --manifest {output.manifest} > {log} 2>&1"
