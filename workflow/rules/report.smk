rule record_provenance:
    input:
        unpack(get_provenance_files),
    output:
        record="results/provenance.json",
    log:
        "logs/record_provenance.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        config=config,
        repo=workflow.basedir,
    script:
        "../scripts/record_provenance.py"
