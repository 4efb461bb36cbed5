"""Run configuration: YAML → typed dataclasses, validated before any work starts.

Every error names the offending key with its full path (``stages[2].language.threshold``) so a
typo in a 200-line config is found in seconds, not after an hour of crawling.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thresher.constraints import option, rule_problems
from thresher.errors import CONFIG_ERROR, ThresherError
from thresher.tokenize.step import TokenizeConfig

PARQUET_COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "brotli", "none")


class ConfigError(ThresherError, ValueError):
    """A configuration problem, reported before the run does any work."""

    exit_code = CONFIG_ERROR
    prefix = "config error: "


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
    base_dir: str = "."
    """Directory relative paths in the config are resolved against (the config file's, by default)."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "input": dataclasses.asdict(self.input),
            "output": dataclasses.asdict(self.output),
            "ray": dataclasses.asdict(self.ray),
            "tokenize": dataclasses.asdict(self.tokenize) if self.tokenize else None,
            "stages": [
                {s.name: dataclasses.asdict(s.config) if dataclasses.is_dataclass(s.config) else {}}
                for s in self.stages
            ],
        }
        return out


# --------------------------------------------------------------------------- generic parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_coerce(k, key_tp, where): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise ConfigError."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(fields)})"
            raise ConfigError(f"{where}.{key}: unknown key{hint}".lstrip("."))
        kwargs[key] = _coerce(value, hints[key], f"{where}.{key}".lstrip("."))
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    check_config(obj, where)
    return obj


def check_config(obj: Any, where: str) -> None:
    """Check dataclass ``obj`` as loading a config does: the limits its fields declare
    (:func:`thresher.constraints.option`), then its ``validate(where)`` hook, if any. For configs
    built in code (a command's flags) as well as read from YAML; raises ConfigError naming the key."""
    for key, why in rule_problems(obj):
        raise ConfigError(f"{where}.{key}: {why}".lstrip("."))
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate(where or type(obj).__name__)
        except ConfigError:
            raise
        except ValueError as exc:  # stage configs raise plain ValueError; give it the config's type
            raise ConfigError(str(exc)) from exc


# --------------------------------------------------------------------------- pipeline config


def _parse_stages(raw: Any) -> list[StageSpec]:
    from thresher.registry import STAGES, is_known, stage_class

    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("stages: expected a list of stages, e.g. [{extract: {}}, {language: {languages: [en]}}]")
    specs = []
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
        config = from_dict(conf_cls, options or {}, f"stages[{i}].{name}") if conf_cls is not type(None) else None
        specs.append(StageSpec(name, config))
    return specs


def _parse_override_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML). ``stages.NAME.key=v`` addresses the
    first stage called NAME; ``stages.2.key=v`` the third stage."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. output.path=out/run1")
        key, _, text = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"--set {item!r}: empty key")
        value = _parse_override_value(text)
        node: Any = data
        for part in parts[:-1]:
            if isinstance(node, list):
                node = _stage_options(node, part, item)
                continue
            nxt = node.get(part)
            if nxt is None:
                nxt = [] if part == "stages" else {}
                node[part] = nxt
            node = nxt
        last = parts[-1]
        if isinstance(node, list):
            raise ConfigError(f"--set {item!r}: name a key inside the stage, e.g. stages.language.threshold=0.5")
        node[last] = value
    return data


def _stage_options(stages: list, part: str, item: str) -> dict:
    for idx, entry in enumerate(stages):
        if isinstance(entry, str):
            entry = stages[idx] = {entry: {}}
        ((name, options),) = entry.items()
        if part == name or part == str(idx):
            if options is None:
                options = entry[name] = {}
            return options
    raise ConfigError(f"--set {item!r}: no stage {part!r} in this config")


def parse_config(data: dict[str, Any], base_dir: str | Path = ".") -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError("config: the top level must be a mapping")
    data = dict(data)
    stages = _parse_stages(data.pop("stages", None))
    cfg = from_dict(PipelineConfig, data, "")
    cfg.stages = stages
    cfg.base_dir = str(base_dir)
    return cfg


def check_output_path(path: str | Path) -> None:
    """An output directory that cannot exist (the path, or a directory above it, is a file) is a
    config error before any work, not a ``NotADirectoryError`` once the first shard is written."""
    target = Path(path).absolute()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"output.path: {target} is a file, not a directory")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"output.path: {target} is below {parent}, which is a file, not a directory")
            return


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML file's content; a missing file or bad YAML is a ConfigError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    path = Path(path)
    data = apply_overrides(read_yaml(path), overrides or [])
    return parse_config(data, base_dir=path.resolve().parent)
