"""A missing lid.176 file fails a run whose extract stage drops pages by language early, before any
page is read, as the language stage does, instead of turning into one error per page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from thresher.extract import ExtractConfig, ExtractStage
from thresher.filters import language
from thresher.filters.language import LanguageConfig, LanguageFilter
from thresher.models import ModelNotFound

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.warc.gz"


@pytest.fixture
def missing_model(tmp_path, monkeypatch):
    """THRESHER_LID_MODEL names a file that is not there; the loaded model is forgotten for the
    test (and again after it, so later tests load the real one)."""
    path = tmp_path / "models" / "lid.176.ftz"
    monkeypatch.setenv("THRESHER_LID_MODEL", str(path))
    language._model.cache_clear()
    yield path
    language._model.cache_clear()


def test_cascade_preflight_fails_like_the_language_stage(missing_model):
    with pytest.raises(ModelNotFound) as language_error:
        LanguageFilter(LanguageConfig(languages=["en"])).preflight()
    with pytest.raises(ModelNotFound) as extract_error:
        ExtractStage(ExtractConfig(mode="cascade", languages=["en"])).preflight()
    assert str(extract_error.value) == str(language_error.value)
    assert str(missing_model) in str(extract_error.value)


@pytest.mark.parametrize(
    "config", [ExtractConfig(mode="cascade"), ExtractConfig(mode="trafilatura", languages=["en"])]
)
def test_preflight_needs_no_model_without_the_early_language_drop(missing_model, config):
    ExtractStage(config).preflight()


def test_local_run_stops_before_reading(missing_model, tmp_path):
    config = tmp_path / "run.yaml"
    output = tmp_path / "out"
    config.write_text(
        f"name: preflight\ninput:\n  paths: [{DEMO}]\noutput:\n  path: {output}\n"
        "stages:\n  - extract: {mode: cascade, languages: [en]}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "THRESHER_LID_MODEL": str(missing_model), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, "-m", "thresher.cli", "run", str(config), "--local"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0, proc.stdout
    errors = [line for line in proc.stderr.splitlines() if "lid.176.ftz not found" in line]
    assert len(errors) == 1, proc.stderr  # one line, not one error per page
    assert errors[0].startswith("thresher: ") and f"(looked in {missing_model})" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not output.exists()  # stopped before the output was prepared or a record was read
