# One job per (model, feature, module, submodule): SGD to the threshold, then GDT.


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
