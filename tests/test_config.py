"""Config errors are reported before any work, naming the key."""

from __future__ import annotations

from pathlib import Path

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
        (
            {"stages": [{"language": {"threshhold": 0.5}}]},
            "stages[0].language.threshhold: unknown key (did you mean 'threshold'?)",
        ),
        (
            {"stages": [{"language": {"threshold": "high"}}]},
            "stages[0].language.threshold: expected a number, got 'high'",
        ),
        (
            {"stages": [{"language": {"threshold": 1.5}}]},
            "stages[0].language.threshold: must be between 0 and 1",
        ),
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


# --------------------------------------------------------------------------- limits, via the CLI

DEMO_WARC = Path(__file__).resolve().parents[1] / "examples" / "demo.warc.gz"
CONFIG = """\
input: {{paths: [{warc}]}}
stages:
  - extract: {{languages: [en]}}
  - language: {{languages: [en]}}
  - gopher_quality: {{}}
"""


def run_cli(capsys, tmp_path, *args: str) -> tuple[int, list[str]]:
    """``thresher run`` in this process on the demo WARC: its exit code and its stderr lines."""
    from thresher.cli import main

    config = tmp_path / "pipeline.yaml"
    config.write_text(CONFIG.format(warc=DEMO_WARC))
    argv = ["run", str(config), "--local", *args]
    if "--output" not in args:
        argv += ["--output", str(tmp_path / "out")]
    code = main(argv)
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ray.concurrency=-1", "ray.concurrency: must be >= 1, got -1"),
        ("ray.block_docs=0", "ray.block_docs: must be >= 1, got 0"),
        ("ray.num_cpus=0", "ray.num_cpus: must be >= 1, got 0"),
        ("input.max_bytes_per_shard=-1", "input.max_bytes_per_shard: must be >= 1, got -1"),
        ("input.docs_per_shard=0", "input.docs_per_shard: must be >= 1, got 0"),
        ("stages.extract.timeout_s=-5", "stages[0].extract.timeout_s: must be > 0, got -5"),
        ("stages.extract.timeout_s=0", "stages[0].extract.timeout_s: must be > 0, got 0"),
        (
            "stages.gopher_quality.min_doc_words=-1",
            "stages[2].gopher_quality.min_doc_words: must be >= 0, got -1",
        ),
        (
            "stages.gopher_quality.max_doc_words=-100",
            "stages[2].gopher_quality.max_doc_words: must be >= 0, got -100",
        ),
        (
            "stages.gopher_quality.languages={zh: {min_doc_words: -5}}",
            "stages[2].gopher_quality.languages.zh.min_doc_words: must be >= 0, got -5",
        ),
        (
            "stages.gopher_quality.min_alpha_words_ratio=1.5",
            "stages[2].gopher_quality.min_alpha_words_ratio: must be between 0 and 1, got 1.5",
        ),
        (
            "stages.language.languages=[en, eng]",
            "stages[1].language.languages[1]: unknown language code 'eng' (did you mean 'en'?)",
        ),
        (
            "stages.extract.languages=[english]",
            "stages[0].extract.languages[0]: unknown language code 'english' (lid.176 codes look like en, de, zh, pt)",
        ),
        (
            "stages.language.thresholds={EN: 0.5}",
            "stages[1].language.thresholds.EN: unknown language code 'EN' (did you mean 'en'?)",
        ),
        (
            "stages.gopher_quality.default_language=xx",
            "stages[2].gopher_quality.default_language: unknown language code 'xx' "
            "(lid.176 codes look like en, de, zh, pt)",
        ),
        ("tokenize.train.min_frequency=0", "tokenize.train.min_frequency: must be >= 1, got 0"),
        ("tokenize.validation_fraction=1", "tokenize.validation_fraction: must be >= 0 and < 1, got 1"),
        (
            "tokenize.target_tokens_per_shard=-1",
            "tokenize.target_tokens_per_shard: must be between 1 and 2147483647, got -1",
        ),
        (
            "output.compression=lzma",
            "output.compression: must be one of zstd, snappy, gzip, lz4, brotli, none; got 'lzma'",
        ),
    ],
)
def test_values_that_would_break_the_run_are_config_errors(capsys, tmp_path, override, message):
    code, lines = run_cli(capsys, tmp_path, "--set", override)
    assert (code, lines) == (2, [f"thresher: config error: {message}"])
    assert not (tmp_path / "out").exists()  # stopped before any work


def test_an_output_below_a_file_is_a_config_error(capsys, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory\n")
    code, lines = run_cli(capsys, tmp_path, "--output", str(a_file / "run"))
    assert (code, lines) == (
        2,
        [
            f"thresher: config error: output.path: {a_file / 'run'} is below {a_file}, which is a file, not a directory"
        ],
    )
    code, lines = run_cli(capsys, tmp_path, "--output", str(a_file))
    assert (code, lines) == (2, [f"thresher: config error: output.path: {a_file} is a file, not a directory"])
    assert a_file.read_text() == "not a directory\n"


def test_output_compression_is_the_codec_of_the_documents(capsys, tmp_path):
    import pyarrow.parquet as pq

    (tmp_path / "pipeline.yaml").write_text(f"input: {{paths: [{DEMO_WARC}]}}\nstages: []\n")
    from thresher.cli import main

    for codec, expected in (("gzip", "GZIP"), ("none", "UNCOMPRESSED")):
        out = tmp_path / codec
        argv = ["run", str(tmp_path / "pipeline.yaml"), "--local", "--output", str(out)]
        assert main([*argv, "--set", f"output.compression={codec}", "--set", "ray.progress=false"]) == 0
        files = sorted((out / "documents").glob("*.parquet")) + sorted((out / "dropped").glob("*.parquet"))
        assert files
        for f in files:
            meta = pq.ParquetFile(f).metadata
            assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {expected}, f


def test_every_numeric_option_declares_its_limits():
    """A new numeric option without ``option(..., ge=...)`` would accept -1 silently again."""
    import dataclasses
    import typing

    from thresher.config import InputConfig, OutputConfig, RayConfig
    from thresher.dataconfig import RULE
    from thresher.registry import STAGES, stage_class
    from thresher.tokenize.step import TokenizeConfig, TrainConfig

    configs = {name: stage_class(name).Config for name in STAGES}
    configs.update(input=InputConfig, output=OutputConfig, ray=RayConfig, tokenize=TokenizeConfig)
    configs["tokenize.train"] = TrainConfig
    checked_by_validate = {"tokenize.train.vocab_size"}  # its message says why 257
    unchecked = []
    for name, config in configs.items():
        if config is type(None):
            continue
        hints = typing.get_type_hints(config)
        for f in dataclasses.fields(config):
            numeric = {int, float} & set(typing.get_args(hints[f.name]) or (hints[f.name],))
            if numeric and RULE not in f.metadata and f"{name}.{f.name}" not in checked_by_validate:
                unchecked.append(f"{name}.{f.name}")
    assert unchecked == []


def test_the_language_codes_are_the_models_labels():
    fasttext = pytest.importorskip("fasttext")
    from thresher.languages import LID176_LANGUAGES
    from thresher.models import ModelNotFound, lid_model_path

    try:
        path = lid_model_path()
    except ModelNotFound:
        pytest.skip("lid.176 not fetched")
    labels = fasttext.load_model(str(path)).get_labels()
    assert LID176_LANGUAGES == {label.removeprefix("__label__") for label in labels}


# --------------------------------------------------------------------------- extract and language agree

FINEWEB = Path(__file__).resolve().parents[1] / "pipeline" / "configs" / "fineweb.yaml"


def run_fineweb(capsys, tmp_path, *overrides: str) -> tuple[int, list[str]]:
    """``thresher run pipeline/configs/fineweb.yaml`` on the demo WARC, without FineWeb's URL lists
    (a fetch needs PyPI); its exit code and stderr lines."""
    from thresher.cli import main

    argv = ["run", str(FINEWEB), "--local", "--input", str(DEMO_WARC), "--output", str(tmp_path / "out")]
    for item in ("stages.url_filter.use_fineweb_lists=false", "ray.progress=false", *overrides):
        argv += ["--set", item]
    code = main(argv)
    return code, capsys.readouterr().err.splitlines()


def test_setting_the_language_stage_moves_the_early_drop_too(capsys, tmp_path):
    """Regression: ``--set stages.language.languages=[de]`` on fineweb.yaml left extract's early drop
    on [en], so every German page was dropped as early_language_not_kept and the run kept none."""
    import pyarrow.parquet as pq

    code, _ = run_fineweb(capsys, tmp_path, "stages.language.languages=[de]")
    assert code == 0
    kept = pq.read_table(tmp_path / "out" / "documents").column("language").to_pylist()
    assert kept and set(kept) == {"de"}
    dropped = pq.read_table(tmp_path / "out" / "dropped").to_pylist()
    early = [d for d in dropped if d["reason"] == "early_language_not_kept"]
    assert early and not [d for d in early if d.get("detail") == "de"], "a German page was dropped early"


def test_extract_and_language_stage_languages_that_differ_are_a_config_error(capsys, tmp_path):
    code, lines = run_fineweb(
        capsys, tmp_path, "stages.extract.languages=[en]", "stages.language.languages=[de]"
    )
    assert (code, lines) == (
        2,
        [
            "thresher: config error: stages[1].extract.languages: [en] differs from "
            "stages[2].language.languages: [de], so the early language drop would remove pages the "
            "language stage keeps; leave extract.languages out to use the language stage's"
        ],
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extract", "language", "expected"),
    [
        ({}, {"languages": ["de", "fr"]}, ["de", "fr"]),  # not given: the language stage's
        ({"languages": ["fr", "de"]}, {"languages": ["de", "fr"]}, ["fr", "de"]),  # the same set
        ({"languages": []}, {"languages": ["de"]}, []),  # given empty: no early language drop
        ({}, {}, []),  # the language stage keeps every language: no early drop either
    ],
)
def test_extract_languages_follow_the_language_stage(extract, language, expected):
    cfg = parse_config({"stages": [{"extract": extract}, {"language": language}]})
    assert cfg.stages[0].config.languages == expected


def test_extract_languages_stand_alone_without_a_later_language_stage():
    cfg = parse_config({"stages": [{"language": {"languages": ["de"]}}, {"extract": {"languages": ["en"]}}]})
    assert cfg.stages[1].config.languages == ["en"]
    with pytest.raises(
        ConfigError,
        match=r"stages\[0\].extract.languages: \[en\] differs from "
        r"stages\[1\].language.languages: \[\] \(every language\)",
    ):
        parse_config({"stages": [{"extract": {"languages": ["en"]}}, {"language": {}}]})
