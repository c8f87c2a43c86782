"""Prefect flows that orchestrate the DVC pipeline (``flows.pipeline``)."""
