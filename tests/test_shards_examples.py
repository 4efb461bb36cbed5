"""The example training scripts run end to end on real token shards and the loss falls."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from thresher.shards.sample import small_sample_tokens
from thresher.shards.stream import TokenCorpus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tokens_dir(tmp_path_factory, shared_data):
    """Real tokens dir, built once per session and shared by the test_shards_* modules."""
    data = shared_data("lid-lingua-testdata").parent
    return small_sample_tokens(tmp_path_factory.getbasetemp() / "shards-sample", data)


@pytest.mark.slow  # imports a framework and trains: 10-30 s on 2 cores
@pytest.mark.parametrize("script,framework", [("train_torch.py", "torch"), ("train_jax.py", "jax")])
def test_example_trains(tokens_dir, tmp_path, script, framework):
    pytest.importorskip(framework)
    batch_flag = "--batch-size" if framework == "torch" else "--global-batch-size"
    cmd = [
        sys.executable,
        str(ROOT / "examples" / script),
        str(tokens_dir),
        "--steps",
        "20",
        "--seq-len",
        "64",
        batch_flag,
        "8",
    ]
    if framework == "torch":
        cmd += ["--checkpoint", str(tmp_path / "ckpt.pt")]
    # one intra-op thread: OpenMP spin-waiting on a shared 2-core box costs minutes
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", out.stdout)]
    assert len(losses) == 2 and "tokens/s" in out.stdout
    vocab = TokenCorpus(tokens_dir, "train").vocab_size
    assert losses[-1] < math.log(vocab)  # learnt something beyond uniform guessing
    if framework == "torch":  # a second run resumes the loader and model from the checkpoint
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
        assert again.returncode == 0 and "resumed at epoch 0, batch 20" in again.stdout
