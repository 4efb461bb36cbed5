"""The pipeline's configuration: input, output, Ray, the stages in order, tokenization.

Built with the generic YAML → dataclass layer (:mod:`thresher.dataconfig`: types, limits,
unknown keys, ``--set``), so every error names the offending key with its full path. This module
adds what only a pipeline knows: the stage list (each entry's name picks the stage, its options
the stage's ``Config``) and the checks that span stages, all made when the config loads.

Cross-stage rule, languages: the extract stage's early language drop (cascade mode) exists to
spare trafilatura the pages the ``language`` stage will drop, so it must keep the same
languages, or a page the language stage keeps is lost early as ``early_language_not_kept``.
``extract.languages`` therefore defaults to the ``languages`` of the first ``language`` stage
after it: set the languages once, on the language stage (``--set stages.language.languages=[de]``
then moves both). Given on both, the lists must be equal (an error names both keys), or
``extract.languages: []`` to turn the early drop off. Without a later language stage,
``extract.languages`` stands alone (the early drop is then the run's only language filter).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thresher.dataconfig import ConfigError, apply_overrides, from_dict, option, read_yaml
from thresher.dataconfig import (
    check_config as check_config,  # re-exported: thresher dedup imports it from here
)
from thresher.io import StorageConfig
from thresher.shards.exports import ExportConfig
from thresher.tokenize.step import TokenizeConfig

PARQUET_COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")


@dataclass
class InputConfig:
    paths: list[str] = field(default_factory=list)
    """Files, directories or globs; local paths or any fsspec/pyarrow URI (s3://, gs://, https://)."""
    format: str = option("auto", choices=("auto", "warc", "parquet", "jsonl"))
    """auto | warc | parquet | jsonl. ``auto`` decides per file from its name."""
    docs_per_shard: int = option(1000, ge=1)
    """Documents per in-flight block; each block becomes one output shard."""
    max_bytes_per_shard: int = option(64 * 1024 * 1024, ge=1)
    """Raw payload bytes per in-flight block (bounds worker memory on large pages)."""


@dataclass
class OutputConfig:
    path: str = "out"
    write_dropped: bool = True
    """Also write ``dropped/*.parquet`` (id, url, stage, reason, value) to answer "why was X dropped"."""
    compression: str = option("zstd", choices=PARQUET_COMPRESSIONS)
    """Codec of the documents and dropped Parquet files (``none``: uncompressed)."""


@dataclass
class RayConfig:
    address: str | None = None
    """None: use RAY_ADDRESS if set, else start an embedded local Ray. "auto": join a running cluster."""
    num_cpus: int | None = option(None, ge=1)
    object_store_memory: int | None = option(None, ge=1)
    """Bytes of a local Ray's object store (default: Ray's choice)."""
    progress: bool = True
    concurrency: int | None = option(None, ge=1)
    """Upper bound on parallel workers per stage (default: what the cluster offers)."""
    block_docs: int = option(64, ge=1)
    """Documents per block between stages: small, so that one input file still spreads over every
    worker; larger blocks cost less scheduling on big inputs."""


@dataclass
class StageSpec:
    name: str
    config: Any


@dataclass
class PipelineConfig:
    name: str = "thresher"
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    stages: list[StageSpec] = field(default_factory=list)
    tokenize: TokenizeConfig | None = None
    """When set, the run ends by tokenizing its documents into ``OUTPUT/tokens``."""
    export: ExportConfig | None = None
    """When set, the run ends by exporting its tokens or documents into ``OUTPUT/exports/FORMAT``."""
    storage: StorageConfig = field(default_factory=StorageConfig)
    """Retries, backoff and concurrency of reads and writes on object storage (``s3://``, ``gs://``)."""
    base_dir: str = "."
    """Directory relative paths in the config are resolved against (the config file's, by default)."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "input": dataclasses.asdict(self.input),
            "output": dataclasses.asdict(self.output),
            "ray": dataclasses.asdict(self.ray),
            "storage": dataclasses.asdict(self.storage),
            "tokenize": dataclasses.asdict(self.tokenize) if self.tokenize else None,
            **({"export": dataclasses.asdict(self.export)} if self.export else {}),
            "stages": [
                {s.name: dataclasses.asdict(s.config) if dataclasses.is_dataclass(s.config) else {}}
                for s in self.stages
            ],
        }
        return out


# --------------------------------------------------------------------------- pipeline config


def _parse_stages(raw: Any) -> tuple[list[StageSpec], list[set[str]]]:
    """The stages, and for each the option keys the config gives (the others are defaults)."""
    from thresher.registry import STAGES, is_known, stage_class

    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise ConfigError(
            "stages: expected a list of stages, e.g. [{extract: {}}, {language: {languages: [en]}}]"
        )
    specs, given = [], []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"stages[{i}]: each stage is a mapping with one key, its name; got {item!r}")
        ((name, options),) = item.items()
        if not is_known(name):
            close = difflib.get_close_matches(str(name), list(STAGES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known stages: {', '.join(STAGES)})"
            raise ConfigError(f"stages[{i}]: unknown stage {name!r}{hint}")
        try:
            cls = stage_class(name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"stages[{i}]: cannot import stage {name!r}: {exc}") from exc
        conf_cls = cls.Config
        config = (
            from_dict(conf_cls, options or {}, f"stages[{i}].{name}") if conf_cls is not type(None) else None
        )
        specs.append(StageSpec(name, config))
        given.append(set(options) if isinstance(options, dict) else set())
    return specs, given


def _link_languages(stages: list[StageSpec], given: list[set[str]]) -> None:
    """``extract.languages`` follows the next ``language`` stage's, or must equal it (module docstring)."""
    for i, spec in enumerate(stages):
        if spec.name != "extract":
            continue
        j = next((j for j in range(i + 1, len(stages)) if stages[j].name == "language"), None)
        if j is None:
            continue
        keep = stages[j].config.languages
        if "languages" not in given[i]:
            spec.config.languages = list(keep)
        elif spec.config.languages and set(spec.config.languages) != set(keep):
            raise ConfigError(
                f"stages[{i}].extract.languages: {_codes(spec.config.languages)} differs from "
                f"stages[{j}].language.languages: {_codes(keep)}, so the early language drop would remove "
                "pages the language stage keeps; leave extract.languages out to use the language stage's"
            )


def _codes(languages: list[str]) -> str:
    return f"[{', '.join(languages)}]" if languages else "[] (every language)"


def parse_config(data: dict[str, Any], base_dir: str | Path = ".") -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError("config: the top level must be a mapping")
    data = dict(data)
    stages, given = _parse_stages(data.pop("stages", None))
    _link_languages(stages, given)
    cfg = from_dict(PipelineConfig, data, "")
    cfg.stages = stages
    if cfg.export is not None and cfg.export.needs_tokens() and cfg.tokenize is None:
        raise ConfigError(
            f"export.formats: {', '.join(cfg.export.needs_tokens())} export tokens; add a tokenize: section"
        )
    cfg.base_dir = str(base_dir)
    return cfg


def check_output_path(path: str | Path) -> None:
    """An output directory that cannot exist (the path, or a directory above it, is a file) is a
    config error before any work, not a ``NotADirectoryError`` once the first shard is written.
    A URI (``s3://bucket/prefix``) is checked by the run's storage probe instead."""
    if "://" in str(path) and not str(path).startswith("file://"):
        return
    target = Path(path).absolute()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"output.path: {target} is a file, not a directory")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"output.path: {target} is below {parent}, which is a file, not a directory"
                )
            return


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    path = Path(path)
    data = apply_overrides(read_yaml(path), overrides or [])
    return parse_config(data, base_dir=path.resolve().parent)
