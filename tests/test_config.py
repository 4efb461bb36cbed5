"""Config errors are reported before any work, naming the key."""

from __future__ import annotations

import pytest

from thresher.config import ConfigError, apply_overrides, load_config, parse_config


def test_valid_config_builds_typed_stages():
    cfg = parse_config({"stages": [{"extract": {"timeout_s": 3}}, {"language": {"languages": ["en"]}}]})
    assert [s.name for s in cfg.stages] == ["extract", "language"]
    assert cfg.stages[0].config.timeout_s == 3.0
    assert cfg.stages[1].config.languages == ["en"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"outptu": {}}, "outptu: unknown key (did you mean 'output'?)"),
        ({"input": {"paths": "x.warc"}}, "input.paths: expected a list"),
        ({"input": {"format": "csv"}}, "input.format: must be one of auto, warc, parquet, jsonl"),
        ({"stages": [{"languag": {}}]}, "stages[0]: unknown stage 'languag' (did you mean 'language'?)"),
        ({"stages": [{"language": {"threshhold": 0.5}}]}, "stages[0].language.threshhold: unknown key (did you mean 'threshold'?)"),
        ({"stages": [{"language": {"threshold": "high"}}]}, "stages[0].language.threshold: expected a number, got 'high'"),
        ({"stages": [{"language": {"threshold": 1.5}}]}, "stages[0].language.threshold: must be between 0 and 1"),
        ({"ray": {"num_cpus": "two"}}, "ray.num_cpus"),
    ],
)
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in str(err.value)


def test_overrides_reach_nested_and_stage_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stages:\n  - extract: {}\n  - language: {languages: [en]}\n")
    cfg = load_config(path, ["output.path=/tmp/x", "stages.language.threshold=0.3", "stages.0.timeout_s=2"])
    assert cfg.output.path == "/tmp/x"
    assert cfg.stages[1].config.threshold == 0.3
    assert cfg.stages[0].config.timeout_s == 2.0


def test_override_errors():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["output.path"])
    with pytest.raises(ConfigError, match="no stage 'dedup'"):
        apply_overrides({"stages": [{"extract": {}}]}, ["stages.dedup.threshold=1"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_shipped_configs_parse():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "pipeline" / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.stages, path
