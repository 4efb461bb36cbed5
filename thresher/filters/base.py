"""What the rule-based filter stages share: per-language thresholds.

A rule family's config holds the published thresholds; ``languages`` overrides any of them for a
language (``languages: {zh: {min_avg_word_length: 1}}``). The document's language is the one the
language stage found, else ``default_language``. Families also ship built-in overrides for the
languages where the English thresholds are wrong by construction (words of one or two characters
in Chinese); a user's overrides win over the built-in ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from thresher.document import Document
from thresher.stage import Stage

NOT_OVERRIDABLE = ("languages", "default_language")


def validate_language_overrides(config: Any, where: str) -> None:
    """Each override must name a field of the config and have a value of the field's type."""
    from thresher.dataconfig import from_dict

    names = {f.name for f in dataclasses.fields(config)} - set(NOT_OVERRIDABLE)
    for lang, overrides in config.languages.items():
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(
                f"{where}.languages.{lang}: unknown keys {sorted(unknown)} (known: {sorted(names)})"
            )
        base = {n: getattr(config, n) for n in names}
        from_dict(type(config), {**base, **overrides, "languages": {}}, f"{where}.languages.{lang}")


class LanguageAwareStage(Stage):
    """A stage whose thresholds may differ per document language."""

    builtin_overrides: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self._per_language: dict[str, Any] = {}

    def language_of(self, doc: Document) -> str:
        return doc.language or self.config.default_language

    def config_for(self, language: str) -> Any:
        cfg = self._per_language.get(language)
        if cfg is None:
            overrides = {
                **self.builtin_overrides.get(language, {}),
                **self.config.languages.get(language, {}),
            }
            cfg = dataclasses.replace(self.config, **overrides) if overrides else self.config
            self._per_language[language] = cfg
        return cfg
