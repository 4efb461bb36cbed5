"""Thresher on Airflow: crawl → process → tokenize → publish manifest, once a month by default.

Each task is one command of the Thresher install (``.venv/bin/thresher`` unless the
``thresher_venv`` Param says otherwise), run by ``@task.bash``: Airflow only schedules, retries
and kills; it never imports Thresher or Ray, so its own pins (it lives in ``.venv-airflow``)
never meet the pipeline's. When the ``ray_address`` Param names a Ray cluster (its job server,
e.g. ``http://head:8265``) the same commands go there through ``ray job submit`` (Ray's own
client of its Job Submission API, from the Thresher venv so its version matches the cluster's);
``thresher`` must then be installed on the cluster and the output directory must be on a
filesystem both the cluster and this worker see.

Output of one DAG run (``output`` Param; ``{run_id}`` and ``{date}`` are filled in)::

    OUTPUT/crawl/warc/*.warc.gz   the crawl, when ``crawl_seeds`` is set (else the config's inputs)
    OUTPUT/documents, stats.json  ``thresher run CONFIG``
    OUTPUT/tokenizer/             ``thresher tokenizer train`` (``tokenizer_vocab_size`` > 0)
    OUTPUT/tokens/                when the config's own tokenize stage wrote token shards
    OUTPUT/manifest.json          every file above with sha256 and row counts, written last

Retries are safe to repeat: a retried crawl continues its job directory, a retried process runs
``thresher run --resume`` (input files already done are kept), and on a cluster a retry first
stops the Ray job of the try before it.

Settings read when the DAG file is parsed (Params cannot change them): THRESHER_DAG_SCHEDULE
(default ``@monthly``, one run per Common Crawl dump), THRESHER_DAG_RETRIES (2),
THRESHER_DAG_RETRY_DELAY_S (300), THRESHER_VENV (``<repo>/.venv``).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowSkipException

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "thresher_pipeline"
CLUSTER_THRESHER = "thresher"  # on the cluster's PATH (pipeline/cluster.yaml installs it)

SCHEDULE = os.environ.get("THRESHER_DAG_SCHEDULE", "@monthly") or None
RETRIES = int(os.environ.get("THRESHER_DAG_RETRIES", "2"))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("THRESHER_DAG_RETRY_DELAY_S", "300")))
DEFAULT_VENV = os.environ.get("THRESHER_VENV", str(REPO / ".venv"))


# --------------------------------------------------------------------------- commands


def safe_name(text: str) -> str:
    """Run ids (``manual__2026-03-01T00:00:00+00:00``) as path and Ray job id parts."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _abs(path: str) -> str:
    """Relative Params are relative to the repository, as with ``make run``."""
    return path if "://" in path or os.path.isabs(path) else str(REPO / path)


@dataclass(frozen=True)
class RunPlan:
    """Everything a task needs, derived the same way in every task from the Params and the run."""

    params: dict
    run_id: str
    date: str

    @property
    def output(self) -> str:
        template = self.params["output"]
        try:
            path = template.format(run_id=safe_name(self.run_id), date=self.date)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"output {template!r}: only {{run_id}} and {{date}} can be filled in ({exc!r})"
            ) from None
        if "://" in path:
            raise ValueError(
                f"output {path!r}: thresher run writes to a directory (shared with the cluster "
                "when ray_address is set), not to an object-store URI"
            )
        return _abs(path)

    @property
    def crawl_dir(self) -> str:
        return os.path.join(self.output, "crawl")

    @property
    def ray_address(self) -> str:
        return self.params["ray_address"].strip()

    @property
    def venv_bin(self) -> Path:
        return Path(_abs(self.params["thresher_venv"])) / "bin"

    @property
    def thresher(self) -> str:
        return CLUSTER_THRESHER if self.ray_address else str(self.venv_bin / "thresher")

    @property
    def crawls(self) -> bool:
        return bool(self.params["crawl_seeds"].strip())


def crawl_command(plan: RunPlan) -> list[str]:
    seeds = plan.params["crawl_seeds"].strip()
    argv = [plan.thresher, "crawl", "--output", plan.crawl_dir]
    argv += ["--demo"] if seeds == "demo" else ["--seeds", _abs(seeds)]
    if plan.params["crawl_config"]:
        argv += ["--config", _abs(plan.params["crawl_config"])]
    if plan.params["crawl_max_pages"]:
        argv += ["--max-pages", str(plan.params["crawl_max_pages"])]
    if plan.params["crawl_allow_private"]:
        argv.append("--allow-private")
    return argv


def process_command(plan: RunPlan, resume: bool = False) -> list[str]:
    """A retry resumes: input files the failed try finished are not processed again."""
    argv = [plan.thresher, "run", _abs(plan.params["config"]), "--output", plan.output]
    if resume:
        argv.append("--resume")
    if plan.crawls:
        argv += ["--input", os.path.join(plan.crawl_dir, "warc")]
    for override in plan.params["set"]:
        argv += ["--set", override]
    return argv


def tokenize_skip_reason(plan: RunPlan) -> str | None:
    if os.path.exists(os.path.join(plan.output, "tokens", "manifest.json")):
        return "the config's own tokenize stage already wrote OUTPUT/tokens"
    if not plan.params["tokenizer_vocab_size"]:
        return "tokenizer_vocab_size is 0: no tokenizer to train"
    return None


def tokenize_command(plan: RunPlan) -> list[str]:
    """Train a tokenizer on the run's documents and write token shards + manifest into OUTPUT/tokens."""
    return [plan.thresher, "tokenize", plan.output, "--vocab-size", str(plan.params["tokenizer_vocab_size"])]


def manifest_command(plan: RunPlan, dag_id: str) -> list[str]:
    """Always local: it reads the output directory, which this worker shares with the cluster."""
    meta = {
        "dag_id": dag_id,
        "run_id": plan.run_id,
        "config": _abs(plan.params["config"]),
        "crawl_seeds": plan.params["crawl_seeds"],
        "ray_address": plan.ray_address,
    }
    argv = [str(plan.venv_bin / "python"), "-m", "thresher.orchestration.manifest", plan.output]
    for key, value in meta.items():
        argv += ["--meta", f"{key}={value}"]
    return argv


def on_cluster(plan: RunPlan, argv: list[str], job_id: str, try_number: int) -> str:
    """``ray job submit`` waits for the job and exits non-zero when it fails, like the command itself.

    A retry first stops the previous try's job: a driver whose Airflow task died keeps running
    on the cluster, and two drivers must never write the same output."""
    ray = str(plan.venv_bin / "ray")
    submit = [
        ray,
        "job",
        "submit",
        "--address",
        plan.ray_address,
        "--submission-id",
        f"{job_id}-try{try_number}",
        "--",
        *argv,
    ]
    if try_number <= 1:
        return shlex.join(submit)
    stop = [ray, "job", "stop", "--address", plan.ray_address, f"{job_id}-try{try_number - 1}"]
    return f"{shlex.join(stop)} || true; {shlex.join(submit)}"


def bash(command: str) -> str:
    """@task.bash renders the returned string as a Jinja template; paths, URLs and --set values
    must reach bash verbatim."""
    return "{% raw %}" + command + "{% endraw %}"


def plan_from(context) -> RunPlan:
    run = context["dag_run"]
    when = run.logical_date or run.run_after
    return RunPlan(dict(context["params"]), run.run_id, when.strftime("%Y-%m-%d"))


def shell_for(context, argv: list[str]) -> str:
    plan = plan_from(context)
    if plan.ray_address and argv[0] == CLUSTER_THRESHER:
        job_id = safe_name(f"thresher-{context['dag_run'].run_id}-{context['ti'].task_id}")
        return bash(on_cluster(plan, argv, job_id, context["ti"].try_number))
    return bash(shlex.join(argv))


# --------------------------------------------------------------------------- the DAG

PARAMS = {
    "config": Param(
        "pipeline/configs/demo.yaml",
        type="string",
        description="pipeline YAML (relative paths: to the repository)",
    ),
    "output": Param(
        "out/airflow/{run_id}",
        type="string",
        description="output directory of this run; {run_id} and {date} (YYYY-MM-DD) are filled in",
    ),
    "set": Param(
        [],
        type="array",
        items={"type": "string"},
        description="config overrides KEY=VALUE, as `thresher run --set`",
    ),
    "crawl_seeds": Param(
        "",
        type="string",
        description="seed file (one URL a line), or 'demo' for the bundled site; "
        "empty: no crawl, the config's inputs are processed",
    ),
    "crawl_config": Param("", type="string", description="crawl settings YAML (optional)"),
    "crawl_max_pages": Param(
        0, type="integer", minimum=0, description="stop the crawl after N pages (0: no limit)"
    ),
    "crawl_allow_private": Param(False, type="boolean", description="allow private/loopback addresses"),
    "tokenizer_vocab_size": Param(
        0,
        type="integer",
        minimum=0,
        description="train a BPE tokenizer of this size on the run's documents (0: no)",
    ),
    "ray_address": Param(
        "", type="string", description="Ray job server, e.g. http://head:8265; empty: run on this worker"
    ),
    "thresher_venv": Param(DEFAULT_VENV, type="string", description="virtualenv with Thresher (and Ray)"),
}


@dag(
    dag_id=DAG_ID,
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY, "retry_exponential_backoff": 2.0},
    tags=["thresher"],
    doc_md=__doc__,
)
def thresher_pipeline():
    common = {"cwd": str(REPO), "skip_on_exit_code": None}

    @task.bash(**common)
    def crawl(**context) -> str:
        plan = plan_from(context)
        if not plan.crawls:
            raise AirflowSkipException("no crawl_seeds: processing the config's own inputs")
        return shell_for(context, crawl_command(plan))

    @task.bash(trigger_rule="none_failed", **common)
    def process(**context) -> str:
        resume = context["ti"].try_number > 1
        return shell_for(context, process_command(plan_from(context), resume=resume))

    @task.bash(**common)
    def tokenize(**context) -> str:
        plan = plan_from(context)
        reason = tokenize_skip_reason(plan)
        if reason:
            raise AirflowSkipException(reason)
        return shell_for(context, tokenize_command(plan))

    @task.bash(trigger_rule="none_failed", **common)
    def publish_manifest(**context) -> str:
        return shell_for(context, manifest_command(plan_from(context), DAG_ID))

    crawl() >> process() >> tokenize() >> publish_manifest()


thresher_pipeline()
