"""Language ID: our normalisation against raw lid.176 on the Lingua test set, and the stage."""

from __future__ import annotations

from tests.conftest import shared_path
from thresher.document import Document
from thresher.evaluation.corpora import LINGUA_CLASSES, lingua_accuracy
from thresher.filters.language import LanguageConfig, LanguageFilter, identify

# A spread of scripts and close pairs; the full table is bench/langid.py.
SUBSET = [
    "de",
    "en",
    "es",
    "fr",
    "it",
    "nl",
    "pl",
    "ru",
    "uk",
    "bs",
    "hr",
    "sr",
    "nb",
    "nn",
    "id",
    "ms",
    "zh",
    "ja",
    "ar",
    "hi",
    "tr",
    "vi",
]


def test_normalisation_is_no_worse_than_raw_on_any_length_class():
    res = lingua_accuracy(shared_path("lid-lingua-testdata"), per_file=150, languages=SUBSET)
    for cls in LINGUA_CLASSES:
        n = sum(v[0] for v in res[cls].values())
        raw = sum(v[1] for v in res[cls].values())
        ours = sum(v[2] for v in res[cls].values())
        assert n > 2000
        assert ours >= raw, f"{cls}: ours {ours / n:.4f} < raw {raw / n:.4f}"
    # A real model on real sentences, not a constant: most German sentences are German.
    n, _, ours = res["sentences"]["de"]
    assert ours / n > 0.9


def test_identify_and_language_stage():
    assert identify("Der schnelle braune Fuchs springt über den faulen Hund und läuft davon.")[0] == "de"
    assert identify("") == ("und", 0.0)
    stage = LanguageFilter(LanguageConfig(languages=["en"], threshold=0.65))
    docs = [
        Document(
            id="a", text="This is a plain English sentence about the weather today.\nAnd a second line."
        ),
        Document(id="b", text="Ceci est une phrase en français sur le temps qu'il fait aujourd'hui."),
        Document(id="c", text="   "),
    ]
    stage.apply(docs)
    assert docs[0].drop is None and docs[0].language == "en" and docs[0].language_score > 0.65
    assert docs[1].drop.reason == "language_not_kept" and docs[1].drop.detail == "fr"
    assert docs[2].drop.reason == "no_text"
    assert stage.stats.kept == 1 and stage.stats.dropped["language_not_kept"] == 1
