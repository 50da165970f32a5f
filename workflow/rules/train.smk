# One job per (model, feature, module, submodule): SGD to the threshold, then GDT.


def shard_of(wildcards):
    checkpoints.modularize.get()  # shards exist once the checkpoint ran
    return f"{RESULTS}/shards/{wildcards.mod}_{wildcards.sub}.npz"


def train_settings(wildcards):
    """Only what changes an FNN: a change elsewhere in the config retrains nothing."""
    arch = wildcards.model.split("_")[0]
    models = {"architectures": {arch: config["models"]["architectures"][arch]}, "use": [arch]}
    return settings_json("seed", "device", "transform", "sgd", "gdt", "weights", models=models)


rule train:
    input:
        shard=shard_of,
    output:
        weights=f"{RESULTS}/fnn/{{model}}/{{feature}}/{{mod}}_{{sub}}.weights.npz",
        metrics=f"{RESULTS}/fnn/{{model}}/{{feature}}/{{mod}}_{{sub}}.metrics.json",
    params:
        settings=train_settings,
        checkpoint=f"{RESULTS}/checkpoints/{{model}}/{{feature}}/{{mod}}_{{sub}}.pt",
    log:
        "logs/train/{model}/{feature}/{mod}_{sub}.log",
    benchmark:
        "benchmarks/train/{model}/{feature}/{mod}_{sub}.tsv"
    threads: 1
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    conda:
        "../../envs/errorless.yaml"
    shell:
        "{ERRORLESS} train --shard {input.shard} --feature {wildcards.feature} "
        "--model {wildcards.model} --settings {params.settings:q} --threads {threads} "
        "--weights {output.weights} --metrics {output.metrics} "
        "--checkpoint {params.checkpoint} > {log} 2>&1"
