"""Helpers for running Thresher under a scheduler (the Airflow DAG in ``dags/``).

The scheduler's own environment does not import Thresher: every step is a command of the
Thresher install (``thresher run``, ``thresher crawl``, ``python -m thresher.orchestration.manifest``),
so the scheduler's dependency pins never meet Ray's.
"""
