"""YAML → typed dataclasses: the generic config layer every config of Thresher is built with.

A config is a tree of dataclasses. :func:`from_dict` builds one from the mapping YAML gives,
coercing each value to its field's type annotation and checking it, and every error is a
:class:`ConfigError` naming the offending key with its full path
(``stages[2].language.threshold``), with a "did you mean" for a mistyped key, so a typo in a
200-line config is found in seconds, not after an hour of crawling. :func:`apply_overrides`
applies the command line's ``--set a.b.c=value``; :func:`read_yaml` reads a file.

Limits on values are declared on the dataclass field they belong to (:func:`option`)::

    timeout_s: float = option(10.0, gt=0)
    threshold: float = option(0.65, ge=0, le=1)
    languages: list[str] = option(factory=list, language=True)

and checked when the dataclass is built (:func:`check_config`), so a value that would break the
run hours later (a negative worker count in Ray) or quietly change what it does (a negative time
limit that turns the limit off, a language code the model never outputs) stops it before any
work. A limit applies to a plain value, to each item of a list, and to each value of a mapping
(its keys too, for language codes). ``None`` always passes: in these configs it means "off".

This module knows nothing of pipelines; the run's own config classes and the checks that span
stages are in :mod:`thresher.config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from thresher.errors import CONFIG_ERROR, ThresherError
from thresher.languages import unknown_language


class ConfigError(ThresherError, ValueError):
    """A configuration problem, reported before the run does any work."""

    exit_code = CONFIG_ERROR
    prefix = "config error: "


# --------------------------------------------------------------------------- limits on fields

RULE = "thresher.rule"
"""Key of a field's :class:`Rule` in its dataclass metadata."""


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Rule:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    language: bool = False

    def bounds(self) -> str:
        if self.ge is not None and self.le is not None:
            return f"between {_number(self.ge)} and {_number(self.le)}"
        limits = [(">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)]
        return " and ".join(f"{op} {_number(v)}" for op, v in limits if v is not None)

    def _in_bounds(self, v: float) -> bool:
        return not (
            (self.ge is not None and v < self.ge)
            or (self.gt is not None and v <= self.gt)
            or (self.le is not None and v > self.le)
            or (self.lt is not None and v >= self.lt)
        )

    def problem(self, value: Any) -> tuple[str, str] | None:
        """(where below the field, why) when ``value`` breaks this rule: ``("", …)`` for the value
        itself, ``("[2]", …)`` for a list item, ``(".de", …)`` for a mapping's entry; else None."""
        if value is None:
            return None
        if isinstance(value, dict):
            items = [(f".{k}", v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [("", value)]
        if self.language:  # a mapping's keys are the codes, a list's items, or the value itself
            codes = [(f".{k}", k) for k in value] if isinstance(value, dict) else items
            for where, code in codes:
                why = unknown_language(code)
                if why:
                    return where, why
        has_bounds = any(b is not None for b in (self.ge, self.gt, self.le, self.lt))
        for where, item in items:
            if item is None:
                continue
            if self.choices is not None and item not in self.choices:
                return where, f"must be one of {', '.join(self.choices)}; got {item!r}"
            numeric = isinstance(item, (int, float)) and not isinstance(item, bool)
            if has_bounds and numeric and not self._in_bounds(item):
                return where, f"must be {self.bounds()}, got {_number(item)}"
        return None


def option(
    default: Any = dataclasses.MISSING,
    *,
    factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | list[str] | None = None,
    language: bool = False,
) -> Any:
    """A dataclass field with a default (or ``factory``) and the limits its value must keep."""
    rule = Rule(ge, gt, le, lt, tuple(choices) if choices is not None else None, language)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={RULE: rule})
    return dataclasses.field(default=default, metadata={RULE: rule})


def rule_problems(obj: Any) -> Iterator[tuple[str, str]]:
    """(key below ``obj``, what is wrong) for each field of dataclass ``obj`` that breaks its rule,
    e.g. ``("thresholds.de", "must be between 0 and 1, got 1.2")``."""
    for f in dataclasses.fields(obj):
        rule = f.metadata.get(RULE)
        if rule is not None:
            found = rule.problem(getattr(obj, f.name))
            if found:
                yield f.name + found[0], found[1]


# --------------------------------------------------------------------------- building dataclasses


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
    (:func:`option`), then its ``validate(where)`` hook, if any. For configs
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


# --------------------------------------------------------------------------- overrides and files


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
            raise ConfigError(
                f"--set {item!r}: name a key inside the stage, e.g. stages.language.threshold=0.5"
            )
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


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """A YAML file's content; a missing file or bad YAML is a ConfigError naming the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
