"""Integration tests: the workflow run through Snakemake in temporary folders."""
