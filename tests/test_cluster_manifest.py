"""The cluster recipes, checked without a cluster: ``pipeline/rayjob.yaml`` (a KubeRay RayJob)
runs a real Thresher entry point with arguments Thresher's own parser accepts and a config that
loads, on one image whose Ray and Python fit pyproject (``pipeline/Dockerfile`` builds it), with no
credential written in it; the runtime_env and the ``ray job submit`` command in README's "Running
on a Ray cluster" are valid for Ray and for Thresher. A renamed flag, a moved config, a Ray
upgrade that leaves the manifest behind or a key pasted into the manifest fails here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from thresher.cli import build_parser
from thresher.commands import cmd_run
from thresher.config import load_config

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "pipeline" / "rayjob.yaml"
DOCKERFILE = ROOT / "pipeline" / "Dockerfile"
PYPROJECT = (ROOT / "pyproject.toml").read_text()
README = (ROOT / "README.md").read_text()

# Fields of KubeRay's ray.io/v1 types (ray-operator/apis/ray/v1: RayJobSpec, RayClusterSpec,
# WorkerGroupSpec): a misspelt one is dropped silently by the API server.
RAYJOB_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint",
    "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus",
    "entrypointNumGpus", "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "schedule",
}  # fmt: skip
CLUSTER_FIELDS = {
    "headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling", "autoscalerOptions",
    "headServiceAnnotations", "suspend",
}  # fmt: skip
WORKER_GROUP_FIELDS = {
    "groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams", "template",
    "scaleStrategy",
}  # fmt: skip
SECRET_NAME = re.compile(r"(KEY|KEY_ID|TOKEN|SECRET|PASSWORD|CREDENTIALS?)$", re.IGNORECASE)
SECRET_TEXT = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # an AWS access key id
    re.compile(r"aws_secret_access_key\s*[:=]", re.IGNORECASE),
    re.compile(r"RAY_AUTH_TOKEN\s*[:=]\s*\S"),
]


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def _pods(spec: dict) -> dict[str, dict]:
    cluster = spec["rayClusterSpec"]
    pods = {"head": cluster["headGroupSpec"]["template"], "submitter": spec["submitterPodTemplate"]}
    pods.update({g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]})
    return pods


def _containers(spec: dict) -> dict[str, dict]:
    return {f"{pod}/{c['name']}": c for pod, t in _pods(spec).items() for c in t["spec"]["containers"]}


def _dockerfile_workdir() -> str:
    return re.search(r"^WORKDIR (\S+)$", DOCKERFILE.read_text(), re.MULTILINE).group(1)


def _release(version: str, width: int = 4) -> tuple[int, ...]:
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (width - len(parts)))


def _satisfies(version: str, spec: str) -> bool:
    """``version`` within a PEP 440 range of plain releases (``>=2.50,<3``)."""
    ops = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        "<": lambda a, b: a < b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
    }
    for clause in spec.split(","):
        op, bound = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*([\d.]+)\s*", clause).groups()
        if not ops[op](_release(version), _release(bound)):
            return False
    return True


def _parse_run(argv: list[str]):
    """Thresher's own parser over a ``thresher …`` command line (argparse exits on a bad flag)."""
    assert argv[0] == "thresher", argv
    assert re.search(r'^thresher = "thresher\.cli:main"$', PYPROJECT, re.MULTILINE)  # the console script
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.func is cmd_run
    return args


def test_the_manifest_is_a_rayjob_with_the_fields_kuberay_reads(rayjob):
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    spec = rayjob["spec"]
    assert set(spec) <= RAYJOB_FIELDS, set(spec) - RAYJOB_FIELDS
    assert spec["submissionMode"] == "K8sJobMode" and spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert set(cluster) <= CLUSTER_FIELDS, set(cluster) - CLUSTER_FIELDS
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the head runs the driver only
    for group in cluster["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS, set(group) - WORKER_GROUP_FIELDS
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (worker,) = group["template"]["spec"]["containers"]
        resources = worker["resources"]
        assert resources["requests"] == resources["limits"]  # what Ray schedules on is reserved whole
        assert int(resources["requests"]["cpu"]) >= 2
    for name, pod in _pods(spec).items():
        if name != "submitter":  # Ray's object store lives in /dev/shm: a memory volume
            mounts = {m["mountPath"] for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
            assert "/dev/shm" in mounts and volumes["shm"]["emptyDir"]["medium"] == "Memory", name


def test_the_entrypoint_is_a_thresher_run_our_parser_accepts(rayjob):
    args = _parse_run(shlex.split(rayjob["spec"]["entrypoint"]))
    assert args.input and all(p.startswith("s3://") for p in args.input)
    assert args.output.startswith("s3://") and not args.local
    assert args.resume  # a retried job continues the run
    # the config is the image's copy of this checkout's (pipeline/Dockerfile copies it there)
    workdir = _dockerfile_workdir()
    assert args.config.startswith(workdir + "/")
    config = ROOT / args.config.removeprefix(workdir + "/")
    cfg = load_config(config, args.set)
    assert cfg.stages and cfg.ray.progress is False


def test_the_image_fits_pyproject_and_is_the_same_on_every_pod(rayjob):
    version = re.search(r'^version = "([^"]+)"', PYPROJECT, re.MULTILINE).group(1)
    ray_range = re.search(r'"ray\[[^\]]*\]([^";]+)"', PYPROJECT).group(1)
    python_floor = re.search(r'^requires-python = ">=(\d+)\.(\d+)"', PYPROJECT, re.MULTILINE).groups()
    dockerfile = DOCKERFILE.read_text()
    base = re.search(r"^ARG RAY_IMAGE=rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)$", dockerfile, re.MULTILINE)
    ray_version, py_major, py_minor = base.groups()
    assert _satisfies(ray_version, ray_range), (ray_version, ray_range)
    assert (int(py_major), int(py_minor)) >= tuple(int(p) for p in python_floor)
    assert rayjob["spec"]["rayClusterSpec"]["rayVersion"] == ray_version
    tag = f"thresher:{version}-ray{ray_version}-py{py_major}{py_minor}"
    assert f"-t REGISTRY/{tag} " in dockerfile  # the build command it documents
    images = {name: c["image"] for name, c in _containers(rayjob["spec"]).items()}
    assert all(image == f"REGISTRY/{tag}" for image in images.values()), images
    assert "thresher models fetch" in dockerfile  # the language model is in the image


def test_no_credential_is_written_in_the_manifest(rayjob):
    spec = rayjob["spec"]
    for name, container in _containers(spec).items():
        env = {var["name"]: var for var in container.get("env", [])}
        for var_name, var in env.items():
            if SECRET_NAME.search(var_name):
                assert "value" not in var and var["valueFrom"]["secretKeyRef"]["name"], (name, var_name)
        # Ray token auth everywhere, the token from a Secret
        assert env["RAY_AUTH_MODE"]["value"] == "token", name
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"], name
        for source in container.get("envFrom", []):
            assert set(source) == {"secretRef"}, (name, source)
        if not name.startswith("submitter/"):  # the driver and the workers read and write S3
            assert any(s["secretRef"]["name"] == "thresher-s3" for s in container["envFrom"]), name
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert not [k for k in runtime_env.get("env_vars", {}) if SECRET_NAME.search(k)]
    text = MANIFEST.read_text()
    assert not [p.pattern for p in SECRET_TEXT if p.search(text)]


def _readme_cluster_section() -> str:
    start = README.index("## Running on a Ray cluster")
    return README[start : README.index("\n## ", start + 1)]


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def test_the_readme_runtime_env_is_valid_for_ray():
    from ray.runtime_env import RuntimeEnv

    (block,) = [
        b for b in _code_blocks(_readme_cluster_section(), "yaml") if b.startswith("# runtime-env.yaml")
    ]
    env = yaml.safe_load(block)
    assert set(env) <= set(RuntimeEnv.known_fields), set(env) - set(RuntimeEnv.known_fields)
    RuntimeEnv(**env)  # Ray's own checks of the values
    assert env["working_dir"] == "."
    assert env["env_vars"]["RAY_AUTH_MODE"] in ("disabled", "token")
    assert "THRESHER_LID_MODEL" in env["env_vars"]
    assert not [k for k in env["env_vars"] if SECRET_NAME.search(k)]


def test_the_readme_ray_job_submit_runs_a_thresher_run_our_parser_accepts():
    commands = [
        line
        for block in _code_blocks(_readme_cluster_section(), "bash")
        for line in block.replace("\\\n", " ").splitlines()
        if line.startswith("ray job submit")
    ]
    assert commands
    for command in commands:
        argv = shlex.split(command, comments=True)
        assert "--runtime-env" in argv
        args = _parse_run(argv[argv.index("--") + 1 :])
        assert (ROOT / args.config).is_file()
        assert args.output.startswith("s3://") and all(p.startswith("s3://") for p in args.input)
        load_config(ROOT / args.config, args.set)
