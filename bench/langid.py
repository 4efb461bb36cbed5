"""Language-ID accuracy per language and length class on the Lingua test set (Leipzig corpora):
lid.176 on the raw text against lid.176 after Thresher's normalisation, in the same run.

    .venv/bin/python bench/langid.py [--shared ../shared/data] [--per-file N] [--markdown]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thresher.evaluation.corpora import LINGUA_CLASSES, lingua_accuracy  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--per-file", type=int, default=None)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table (for the README)")
    args = ap.parse_args()
    res = lingua_accuracy(Path(args.shared) / "lid-lingua-testdata", args.per_file)
    langs = sorted(res[LINGUA_CLASSES[0]])
    sep = " | " if args.markdown else "  "
    head = ["lang"] + [f"{c} raw{sep}{c} ours" for c in LINGUA_CLASSES]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * (1 + 2 * len(LINGUA_CLASSES)))
    else:
        print(sep.join(head))

    def cell(n: int, ok: int) -> str:
        return f"{100 * ok / n:.1f}" if n else "-"

    for lang in langs + ["ALL"]:
        cells = [lang]
        for c in LINGUA_CLASSES:
            rows = res[c].values() if lang == "ALL" else [res[c].get(lang, (0, 0, 0))]
            n, raw, ours = (sum(x) for x in zip(*rows, strict=True))
            cells += [cell(n, raw), cell(n, ours)]
        print(("| " + " | ".join(cells) + " |") if args.markdown else sep.join(f"{x:>8}" for x in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
