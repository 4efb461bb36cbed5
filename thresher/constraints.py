"""Limits on config values, declared on the dataclass field they belong to.

A config option that takes a number, a fixed set of words or a language code says so where it is
defined::

    timeout_s: float = option(10.0, gt=0)
    threshold: float = option(0.65, ge=0, le=1)
    languages: list[str] = option(factory=list, language=True)

:func:`thresher.config.from_dict` checks every such field once the YAML is read, so a value that
would break the run hours later (a negative worker count in Ray) or quietly change what it does (a
negative time limit that turns the limit off, a language code the model never outputs) stops it
before any work, with the key's full path in the message.

A limit applies to a plain value, to each item of a list, and to each value of a mapping (its keys
too, for language codes). ``None`` always passes: in these configs it means "off".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from thresher.languages import unknown_language

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
