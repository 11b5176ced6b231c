"""Tests that run Snakemake on the workflow (dry runs, the small run, SLURM)."""
