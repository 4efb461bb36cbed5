"""Ray workers run the driver's ``thresher``, not a ``thresher/`` folder in the directory the
driver was started from (Ray puts the driver's working directory first on every worker's
``sys.path``). Each check runs its driver in a subprocess, so the tests' own Ray is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import thresher

PROBE = """
import json, sys
import ray
import thresher
from thresher.raycontext import init_ray

init_ray(num_cpus=1, object_store_memory=80 * 1024 * 1024, quiet=True)  # num_cpus: local Ray only

@ray.remote
def where():
    import thresher
    import thresher.document
    return [thresher.__file__, thresher.document.__file__]

worker = ray.get(where.remote())
print(json.dumps({"driver": [thresher.__file__, sys.modules["thresher.document"].__file__], "worker": worker}))
ray.shutdown()
"""


# Starts a one-node cluster, then the probe as a driver joining it by address.
ON_A_CLUSTER = """
import os, subprocess, sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": 1, "object_store_memory": 80 * 1024 * 1024, "include_dashboard": False})
try:
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    proc = subprocess.run([sys.executable, sys.argv[1]], env=env, capture_output=True, text=True, timeout=150)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
finally:
    cluster.shutdown()
sys.exit(proc.returncode)
"""


def _run_probe(tmp_path: Path, cluster: bool = False) -> dict:
    """Start a driver from inside a checkout that has its own ``thresher/`` package."""
    checkout = tmp_path / "other-checkout"
    (checkout / "thresher").mkdir(parents=True)
    (checkout / "thresher" / "__init__.py").write_text('"""Another version of the code."""\n')
    (checkout / "thresher" / "document.py").write_text('"""Another version of the code."""\n')
    script = tmp_path / "probe.py"  # outside the checkout: the driver itself imports the installed code
    script.write_text(PROBE)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, str(script)]
    if cluster:
        (tmp_path / "cluster.py").write_text(ON_A_CLUSTER)
        command = [sys.executable, str(tmp_path / "cluster.py"), str(script)]
    proc = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_workers_import_the_drivers_thresher_not_the_working_directorys(tmp_path):
    seen = _run_probe(tmp_path)
    package = Path(thresher.__file__).resolve().parent
    assert [Path(f).resolve().parent for f in seen["driver"]] == [package, package]
    assert seen["worker"] == seen["driver"]


def test_workers_joining_a_cluster_do_not_import_the_working_directorys_thresher(tmp_path):
    seen = _run_probe(tmp_path, cluster=True)
    assert seen["worker"] == seen["driver"]


def test_embedded_ray_workers_run_at_the_drivers_priority(ray_session):
    """Ray starts its workers at nice 15; on a machine with other work that starved the run
    (the embedded Ray on 2 cores did less than one --local process, issue #22)."""
    ray = ray_session

    @ray.remote
    def niceness() -> int:
        return os.nice(0)

    assert set(ray.get([niceness.remote() for _ in range(2)])) == {os.nice(0)}
