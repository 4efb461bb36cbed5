"""Shared fixtures: one real local Ray per test session, paths to the shared real data."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # Ray 2.60 turns token auth on by default
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray workers inherit this, so test-only stages (tests/faults.py) import in workers too.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
)
SHARED_DATA = Path(os.environ.get("THRESHER_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; the calling test is skipped when it is absent (fresh clones)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return path


@pytest.fixture(scope="session")
def shared_data():
    return shared_path


@pytest.fixture(scope="session")
def ray_session():
    """A real embedded Ray, started once per test session (each init costs seconds)."""
    import ray

    from thresher.raycontext import init_ray

    init_ray(num_cpus=2, object_store_memory=256 * 1024 * 1024, quiet=True)
    yield ray
    ray.shutdown()


CORES = 2
"""The CI machine's cores."""


@pytest.fixture(scope="module")
def core_workers():
    """A process per core, for CPU-bound fixtures whose items do not depend on each other. Spawned,
    not forked: by the time they start, this process runs Ray's and JAX's threads."""
    with ProcessPoolExecutor(CORES, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


# A real S3 API server (moto) for the object-storage tests; see tests/s3.py.
from tests.s3 import s3_bucket, s3_env, s3_server  # noqa: E402, F401
