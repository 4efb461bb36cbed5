"""Stage names as written in configs → the classes that implement them.

Import strings keep ``import thresher`` light: a stage's heavy dependencies (fastText,
trafilatura, Scrapy) load only when a run uses it.
"""

from __future__ import annotations

import importlib

STAGES: dict[str, str] = {
    "extract": "thresher.extract.stage:ExtractStage",
    "language": "thresher.filters.language:LanguageFilter",
    "optout": "thresher.filters.optout:OptoutFilter",
    "url_filter": "thresher.filters.url:URLFilter",
    "gopher_repetition": "thresher.filters.gopher:GopherRepetitionFilter",
    "gopher_quality": "thresher.filters.gopher:GopherQualityFilter",
    "c4": "thresher.filters.c4:C4QualityFilter",
    "fineweb_quality": "thresher.filters.fineweb:FineWebQualityFilter",
    "pii": "thresher.filters.pii:PIIFormatter",
    "quality_classifier": "thresher.filters.classifier:QualityClassifierFilter",
    "exact_dedup": "thresher.dedup.stages:ExactDedup",
    "minhash_dedup": "thresher.dedup.stages:MinHashDedup",
}


def is_known(name: str) -> bool:
    """Registered names, plus ``package.module:Class`` import paths for stages of your own."""
    return name in STAGES or ":" in name


def stage_class(name: str) -> type:
    module, _, attr = STAGES.get(name, name).partition(":")
    return getattr(importlib.import_module(module), attr)


def build_stage(name: str, config=None):
    return stage_class(name)(config)
