# Data: the generators (synthetic, the default; photos) and the modularize checkpoint.

# the generators hold the whole training set (12,288 bytes per 64-px image) and a copy, the
# streaming synthetic writer (synthetic.stream) one batch; modularize streams: one source
# batch (its bytes and its array) plus one module of shards
_STREAMED = FORMAT == "synthetic" and config.get("synthetic", {}).get("stream", False)
_HELD = TRAIN_IMAGES / len(TRAIN_BATCHES) if _STREAMED else TRAIN_IMAGES
DATA_MEM, DATA_MIN = scaled(2000 + math.ceil(_HELD * 12288 * 2.5 / 1e6), 60)
_BATCH_MB = TRAIN_IMAGES / len(TRAIN_BATCHES) * 12288 / 1e6
_MODULE_MB = TRAIN_IMAGES / len(MODULES) * 12288 / 1e6
SHARD_MEM = scaled(1000 + math.ceil(2.2 * _BATCH_MB + 2 * _MODULE_MB), 60)[0]


# a generated format's errorless command, settings section = the format's name
GENERATORS = {"synthetic": "synthesize", "photos": "photos"}


if FORMAT in GENERATORS:

    rule synthesize:
        input:
            groups_file(),  # the plants are placed by module (modules.groups)
        output:
            batches=expand(f"{DATA}/{{b}}", b=EVAL_BATCHES),
            planted=f"{DATA}/planted.csv",
        log:
            f"{RESULTS}/logs/synthesize.log",
        benchmark:
            f"{RESULTS}/benchmarks/synthesize.tsv"
        conda:
            "../../envs/errorless.yaml"
        threads: 1
        resources:
            mem_mb=DATA_MEM,
            runtime=DATA_MIN,
        params:
            settings=settings_json(FORMAT, "modules"),
            command=GENERATORS[FORMAT],
            out=lambda wildcards, output: os.path.dirname(output.planted),
        shell:
            "python -m errorless {params.command} --settings {params.settings:q} --out {params.out} > {log} 2>&1"


# A checkpoint: a shard whose content did not change keeps its bytes and mtime, so only the
# training jobs of changed modules rerun (the train rule reads shards through checkpoints.get()).
checkpoint modularize:
    input:
        data_inputs(),
    output:
        manifest=f"{RESULTS}/shards/manifest.tsv",
    log:
        f"{RESULTS}/logs/modularize.log",
    benchmark:
        f"{RESULTS}/benchmarks/modularize.tsv"
    conda:
        "../../envs/errorless.yaml"
    threads: 1
    resources:
        mem_mb=SHARD_MEM,
        runtime=DATA_MIN,
    params:
        settings=settings_json(
            "dataset", *DATA_SECTIONS, "modules", "features", "featured_models"
        ),
        out=lambda wildcards, output: os.path.dirname(output.manifest),
    shell:
        "python -m errorless modularize --settings {params.settings:q} "
        "--out {params.out} --manifest {output.manifest} > {log} 2>&1"
