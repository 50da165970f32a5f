# Training jobs: SGD to the threshold, then GDT. `train.group` cuts them:
#   fnn   -- one job per (model, feature, module, submodule)            (rule train)
#   shard -- one job per (model, module, submodule): every feature's FNN of that shard
#            trained side by side, batched (rule train_shard; docs/slurm.md, "Batched training")
# Both write the same per-FNN files, so gather and everything downstream are unchanged.

PER_FNN = config["train"]["group"] == "fnn"
TRAIN_BENCHMARKS = list(
    dict.fromkeys(  # one per training job: per FNN, or per shard group
        f"{RESULTS}/benchmarks/train/{model}/{feature if PER_FNN else '_shard'}/{mod}_{sub}.tsv"
        for model, feature, mod, sub in GRID.jobs()
    )
)

if PER_FNN:

    rule train:
        input:
            shard=shard_of,
        output:
            weights=f"{RESULTS}/fnn/{{model}}/{{feature}}/{{mod}}_{{sub}}.weights.npz",
            metrics=f"{RESULTS}/fnn/{{model}}/{{feature}}/{{mod}}_{{sub}}.metrics.json",
        log:
            f"{RESULTS}/logs/train/{{model}}/{{feature}}/{{mod}}_{{sub}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/{{model}}/{{feature}}/{{mod}}_{{sub}}.tsv"
        conda:
            "../../envs/errorless.yaml"
        threads: 1
        resources:
            mem_mb=train_mem_mb,
            runtime=train_runtime,
        params:
            settings=train_settings,
            checkpoint=f"{RESULTS}/checkpoints/{{model}}/{{feature}}/{{mod}}_{{sub}}.pt",
        shell:
            "python -m errorless train --shard {input.shard} --feature {wildcards.feature} "
            "--model {wildcards.model} --settings {params.settings:q} --threads {threads} "
            '--device "$ERRORLESS_DEVICE" '
            "--weights {output.weights} --metrics {output.metrics} "
            "--checkpoint {params.checkpoint} > {log} 2>&1"

else:

    rule train_shard:
        input:
            shard=shard_of,
        output:
            weights=expand(
                f"{RESULTS}/fnn/{{{{model}}}}/{{feature}}/{{{{mod}}}}_{{{{sub}}}}.weights.npz",
                feature=FEATURES,
            ),
            metrics=expand(
                f"{RESULTS}/fnn/{{{{model}}}}/{{feature}}/{{{{mod}}}}_{{{{sub}}}}.metrics.json",
                feature=FEATURES,
            ),
        log:
            f"{RESULTS}/logs/train/{{model}}/_shard/{{mod}}_{{sub}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/train/{{model}}/_shard/{{mod}}_{{sub}}.tsv"
        conda:
            "../../envs/errorless.yaml"
        threads: 1
        resources:
            mem_mb=shard_group_mem_mb,
            runtime=shard_group_runtime,
        params:
            settings=train_settings,
            features=" ".join(FEATURES),
            checkpoint=f"{RESULTS}/checkpoints/{{model}}/_shard/{{mod}}_{{sub}}.pt",
        shell:
            "python -m errorless train --shard {input.shard} --feature {params.features} "
            "--model {wildcards.model} --settings {params.settings:q} --threads {threads} "
            '--device "$ERRORLESS_DEVICE" '
            "--weights {output.weights} --metrics {output.metrics} "
            "--checkpoint {params.checkpoint} > {log} 2>&1"
