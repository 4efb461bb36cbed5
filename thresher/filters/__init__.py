"""Document filters: language, quality rules, URL blocklists, PII, learned quality classifier.

``STAGES`` lists this package's stages for :mod:`thresher.registry` (name → import string).
"""

STAGES: dict[str, str] = {
    "language": "thresher.filters.language:LanguageFilter",
    "url_filter": "thresher.filters.url:URLFilter",
    "gopher_repetition": "thresher.filters.gopher:GopherRepetitionFilter",
    "gopher_quality": "thresher.filters.gopher:GopherQualityFilter",
    "c4": "thresher.filters.c4:C4QualityFilter",
    "fineweb_quality": "thresher.filters.fineweb:FineWebQualityFilter",
    "pii": "thresher.filters.pii:PIIFormatter",
    "quality_classifier": "thresher.filters.classifier:QualityClassifierFilter",
}
