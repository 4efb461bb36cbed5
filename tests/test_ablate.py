"""``thresher ablate`` on the demo's data: two real runs of the demo WARC (the demo recipe, and
extraction alone), a tiny GPT trained on each, evaluated on real gold article bodies of the Zyte
benchmark (pages that are not in the demo WARC). Deterministic for a seed, and a process killed
with SIGKILL after a checkpoint resumes to the same losses as one that never stopped."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from thresher.ablate.data import cut_to_budget  # noqa: E402
from thresher.ablate.reference import read_reference, windows  # noqa: E402
from thresher.cli import main  # noqa: E402
from thresher.config import load_config  # noqa: E402
from thresher.shards.stream import IGNORE_INDEX  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS, BATCH, SEQ = 30, 4, 32
TINY = [
    "--steps", str(STEPS), "--batch-size", str(BATCH), "--seq-len", str(SEQ), "--dim", "32", "--layers", "2",
    "--heads", "2", "--vocab-size", "384", "--checkpoint-every", "10", "--warmup-steps", "5", "--threads", "1",
]  # fmt: skip


EXTRACT_ONLY = """
name: extracted
input: {paths: [%s], docs_per_shard: 100}
stages:
  - extract: {mode: cascade, languages: [en, de, fr, es, ja, zh, ru, it, pt]}
"""


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """The demo recipe's run of the demo WARC (a finished run directory)."""
    from thresher.run import run_pipeline

    cfg = load_config(ROOT / "pipeline" / "configs" / "demo.yaml")
    cfg.output.path = str(tmp_path_factory.mktemp("ablate-runs") / "recipe")
    cfg.tokenize = None
    run_pipeline(cfg, local=True)
    return Path(cfg.output.path)


@pytest.fixture(scope="module")
def extract_config(tmp_path_factory):
    """The demo's extract stage alone, as a config the ablation runs itself."""
    path = tmp_path_factory.mktemp("ablate-config") / "extracted.yaml"
    path.write_text(EXTRACT_ONLY % json.dumps(str(ROOT / "examples" / "demo.warc.gz")), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_data):
    """Two reference sources: a JSONL of gold bodies and one gold body as a plain text file."""
    truth = json.loads((shared_data("extraction-scrapinghub-aeb") / "ground-truth.json").read_text("utf-8"))
    items = sorted(truth.items())[:6]
    ref = tmp_path_factory.mktemp("ablate-ref")
    with open(ref / "aeb.jsonl", "w", encoding="utf-8") as f:
        for key, item in items[:5]:
            f.write(json.dumps({"id": key, "text": item["articleBody"], "url": item["url"]}) + "\n")
    (ref / "one.txt").write_text(items[5][1]["articleBody"], encoding="utf-8")
    return ref


def _args(runs, reference, output, *extra):
    return ["ablate", *map(str, runs), "--reference", str(reference), "--output", str(output), *TINY, *extra]


@pytest.fixture(scope="module")
def finished(recipe_run, extract_config, reference, tmp_path_factory):
    """An ablation of a run directory against a config it runs into ``out/runs/extracted``."""
    output = tmp_path_factory.mktemp("ablate") / "out"
    assert main(_args([recipe_run, extract_config], reference, output)) == 0
    return output


@pytest.fixture(scope="module")
def runs(recipe_run, finished):
    """Both candidates as run directories (the second is the run the ablation made from its config)."""
    return [recipe_run, finished / "runs" / "extracted"]


def _losses(output: Path) -> dict[str, tuple]:
    report = json.loads((output / "report.json").read_text("utf-8"))
    return {
        m["name"]: (m["eval"]["all"]["loss"], tuple(m["train"]["losses"]), m["eval"]["sources"])
        for m in report["models"]
    }


@pytest.mark.slow  # two demo runs and an ablation: about 30 s on 2 cores
def test_ablate_reports_every_model_and_source(finished):
    report = json.loads((finished / "report.json").read_text("utf-8"))
    assert [m["name"] for m in report["models"]] == ["recipe", "extracted"]
    assert set(report["reference"]["sources"]) == {"aeb.jsonl", "one.txt"}
    budget = report["token_budget"]
    vocab = report["tokenizer"]["vocab_size"]
    for m in report["models"]:
        assert m["training_tokens"] == budget
        assert m["train"]["tokens_seen"] == STEPS * BATCH * SEQ  # every step full, no padding
        assert m["train"]["steps"] == STEPS and m["train"]["device"].startswith("cpu")
        assert m["reference_urls_in_training"] == 0  # the gold pages are not in the demo WARC
        assert set(m["eval"]["sources"]) == {"aeb.jsonl", "one.txt"}
        assert 0 < m["eval"]["all"]["loss"] < math.log(vocab) + 1
    recipe, extracted = report["models"]
    assert extracted["tokens_in_run"] > recipe["tokens_in_run"] == budget  # the filtered run is the smaller
    assert extracted["documents_used"] < extracted["documents_in_run"]
    assert json.loads((finished / "runs" / "extracted" / "stats.json").read_text("utf-8"))  # the config ran
    page = (finished / "report.html").read_text("utf-8")
    assert page.count("data:image/png;base64,") == 3 and 'id="models"' in page and 'id="sources"' in page


KILLED_RUN = """
import os, signal, sys
from thresher.ablate.cli import config_from_args
from thresher.ablate.runner import run_ablation
from thresher.cli import build_parser

args = build_parser().parse_args(sys.argv[1:])

def kill_after_first(name, step):
    if name == "extracted":
        os.kill(os.getpid(), signal.SIGKILL)

run_ablation(args.runs, args.reference, args.output, config_from_args(args), on_checkpoint=kill_after_first)
"""


@pytest.mark.slow  # an ablation in a subprocess, killed, then resumed: about 20 s
def test_same_seed_same_losses_and_sigkill_resumes_exactly(finished, runs, reference, tmp_path):
    output = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, *_args(runs, reference, output)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    models = output / "work" / "models"
    assert (models / "recipe" / "result.json").is_file()  # the first model finished in that process
    assert (models / "extracted" / "checkpoint.pt").is_file() and not (
        models / "extracted" / "result.json"
    ).exists()
    assert not (output / "report.json").exists()

    assert main(_args(runs, reference, output, "--resume")) == 0
    report = json.loads((output / "report.json").read_text("utf-8"))
    assert [m["train"]["sessions"] for m in report["models"]] == [1, 2]
    # another process, same seed, the config's run given as a directory: the same losses, bit
    # for bit; the resumed model's as well
    assert _losses(output) == _losses(finished)


@pytest.mark.slow
def test_resume_refuses_other_settings_and_occupied_output(
    finished, recipe_run, extract_config, reference, capsys
):
    asked = [recipe_run, extract_config]
    before = _losses(finished)
    assert main(_args(asked, reference, finished)) == 4  # without --resume an ablation is never overwritten
    assert "--resume" in capsys.readouterr().err
    assert main(_args(asked, reference, finished, "--resume", "--seed", "1")) == 5
    assert "other config_hash" in capsys.readouterr().err
    assert main(_args(asked, reference, finished, "--resume")) == 0  # the run, tokens and models reused
    assert _losses(finished) == before


def test_unfinished_run_is_an_input_error(tmp_path, capsys):
    (tmp_path / "run" / "documents").mkdir(parents=True)
    ref = tmp_path / "ref.txt"
    ref.write_text("held-out text", encoding="utf-8")
    args = [
        "ablate",
        str(tmp_path / "run"),
        str(tmp_path / "run"),
        "--reference",
        str(ref),
        "--output",
        str(tmp_path / "o"),
    ]
    assert main(args) == 3
    assert "not a finished run (no stats.json)" in capsys.readouterr().err


def test_cut_to_budget_is_exact_and_ends_documents():
    arrays = [np.array([5, 6, 7, 0]), np.array([8, 9, 0]), np.array([4, 0])]
    ids, cut = cut_to_budget(["a", "b", "c"], arrays, 6, eot_id=0)
    assert ids == ["a", "b"] and [a.tolist() for a in cut] == [[5, 6, 7, 0], [8, 0]]
    assert arrays[1].tolist() == [8, 9, 0]  # the run's own array is not changed


def test_windows_predict_every_token_once():
    stream = np.arange(1, 12)  # 11 tokens: 10 targets
    inputs, targets = windows(stream, 4, eot_id=0)
    assert inputs.shape == targets.shape == (3, 4)
    real = targets[targets != IGNORE_INDEX]
    assert real.tolist() == list(range(2, 12))
    assert inputs[-1].tolist() == [9, 10, 11, 0] and targets[-1].tolist() == [
        10,
        11,
        IGNORE_INDEX,
        IGNORE_INDEX,
    ]


def test_reference_reads_text_jsonl_and_counts_skips(tmp_path):
    (tmp_path / "a.txt").write_text("first text", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"id": "1", "text": "x", "url": "https://example.org/a"})
        + "\n"
        + json.dumps({"text": "no id"})
        + "\n",
        encoding="utf-8",
    )
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    by_file = read_reference(tmp_path)
    assert [(t.source, t.text) for t in by_file.texts] == [("a.txt", "first text"), ("b.jsonl", "x")]
    assert by_file.skipped == {"unknown_format": 1, "missing_id": 1}
    assert read_reference(tmp_path, "host").sources() == ["(no url)", "example.org"]
