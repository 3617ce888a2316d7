"""Prefect flows and deployments; thin: they call ``engine`` and nothing else."""
