"""Recipe ablation on real pages: the FineWeb recipe against the same pages extracted but neither
filtered nor deduplicated, judged by the loss of the same small GPT trained on each.

Training input: the trafilatura evaluation pages (990 HTML files, written into a WARC here with
the URLs of their evaluation data), the WARC samples and the demo WARC. Reference: the gold
article bodies of the Zyte (Scrapinghub) article-extraction benchmark, whose pages are in neither
training input (the report counts reference URLs found among training documents: it must be 0).

    .venv/bin/python bench/ablation.py [--shared ../shared/data] [--work /tmp/thresher-ablation]
        [--steps 400] [--device cpu|cuda] [--dim 64 --layers 2 --seq-len 128] [--resume]

The two candidates:

- ``extracted``: pipeline/configs/fineweb.yaml's extract stage alone (cascade, fast metadata) with
  no target language, so its early language drop is off: every page with text is kept;
- ``fineweb``: the rest of pipeline/configs/fineweb.yaml (URL filter with FineWeb's lists,
  language en >= 0.65, Gopher repetition and quality, C4, FineWeb quality, MinHash dedup, PII) run
  over ``extracted``'s documents. This is the FineWeb recipe on the same extracted text; the URL
  filter runs after extraction instead of before, which changes what is read, not what is kept.
  The lists come from ``thresher filters fetch-lists``; without them the URL filter runs with
  no lists (said on the output).

Both runs are cut to the same token budget (the smaller run's), so the comparison is the data's
content at equal size. Re-running reuses the runs and, with ``--resume``, the ablation.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from thresher.ablate.cli import config_from_args, register  # noqa: E402
from thresher.ablate.runner import run_ablation  # noqa: E402
from thresher.config import StageSpec, load_config  # noqa: E402
from thresher.crawlers.warc import Exchange, RollingWarcWriter, http_request_head, http_response_head  # noqa: E402
from thresher.errors import ThresherError  # noqa: E402
from thresher.run import run_pipeline  # noqa: E402

logger = logging.getLogger("bench.ablation")
FINEWEB = ROOT / "pipeline" / "configs" / "fineweb.yaml"
BENCH_DEFAULTS = ["--dim", "64", "--layers", "2", "--seq-len", "128", "--batch-size", "16", "--steps", "400",
                  "--vocab-size", "2048", "--threads", "1"]  # fmt: skip
"""A few minutes on one CPU core: one thread, because OpenMP threads spin-waiting on a busy
2-core machine made a step 6x slower than on one."""


def trafilatura_warc(shared: Path, work: Path) -> Path:
    """The trafilatura evaluation pages as one WARC of responses, each under its page's URL."""
    dest = work / "warc"
    done = sorted(dest.glob("trafilatura-eval-*.warc.gz"))
    if done:
        return done[0]
    tra = shared / "extraction-trafilatura-eval"
    evaldata = json.loads((tra / "evaldata.json").read_text(encoding="utf-8"))
    writer = RollingWarcWriter(
        dest, "trafilatura-eval", 0, 1 << 40, {"software": "thresher bench/ablation.py"}
    )
    for key, item in sorted(evaldata.items()):
        name = key.split("::")[-1]  # most keys are URLs; a few are "hard::site.tld-name.html"
        host = name.split("-")[0]
        url = name if "://" in name else f"https://{host if '.' in host else 'unknown.invalid'}/{name}"
        with gzip.open(tra / item["file"], "rb") as f:
            payload = f.read()
        head = http_response_head("HTTP/1.1", 200, [(b"Content-Type", b"text/html")])
        path = "/" + url.split("://", 1)[1].split("/", 1)[-1]
        writer.write(Exchange(url, http_request_head("GET", path, []), head, payload))
    writer.close()
    return sorted(dest.glob("trafilatura-eval-*.warc.gz"))[0]


def reference_file(shared: Path, work: Path) -> Path:
    """The Zyte benchmark's gold article bodies as JSONL (id, text, url)."""
    truth = json.loads(
        (shared / "extraction-scrapinghub-aeb" / "ground-truth.json").read_text(encoding="utf-8")
    )
    dest = work / "reference" / "zyte-aeb-gold.jsonl"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "w", encoding="utf-8") as f:
        for key, item in sorted(truth.items()):
            if item.get("articleBody", "").strip():
                f.write(json.dumps({"id": key, "text": item["articleBody"], "url": item.get("url")}) + "\n")
    return dest


def url_lists_note() -> bool:
    from thresher.filters.lists import ListsNotFound, fineweb_url_lists

    try:
        fineweb_url_lists()
        return True
    except ListsNotFound:
        return False


def build_runs(shared: Path, work: Path, local: bool) -> tuple[Path, Path, str]:
    """(extracted run, fineweb run, a note on the URL lists); runs already finished are reused."""
    fineweb = load_config(FINEWEB)
    extract = next(s for s in fineweb.stages if s.name == "extract")
    extract.config.languages = []  # no early language drop: the unfiltered candidate keeps every language
    inputs = [str(trafilatura_warc(shared, work)), str(ROOT / "examples" / "demo.warc.gz")]
    inputs += sorted(str(p) for p in (shared / "warc-samples").glob("*.warc.gz"))

    extracted = work / "runs" / "extracted"
    if not (extracted / "stats.json").is_file():
        cfg = load_config(FINEWEB)
        cfg.name, cfg.input.paths, cfg.output.path, cfg.tokenize = "extracted", inputs, str(extracted), None
        cfg.input.docs_per_shard = 500
        cfg.stages = [StageSpec("extract", extract.config)]
        run_pipeline(cfg, local=local, resume=extracted.exists())

    have_lists = url_lists_note()
    filtered = work / "runs" / "fineweb"
    if not (filtered / "stats.json").is_file():
        cfg = load_config(FINEWEB)
        cfg.input.paths = [str(extracted / "documents")]
        cfg.input.docs_per_shard = 500
        cfg.output.path, cfg.tokenize = str(filtered), None
        cfg.stages = [s for s in cfg.stages if s.name != "extract"]
        if not have_lists:
            for s in cfg.stages:
                if s.name == "url_filter":
                    s.config.use_fineweb_lists = False
        run_pipeline(cfg, local=local, resume=filtered.exists())
    note = "FineWeb's URL lists" if have_lists else "NO URL lists (run `thresher filters fetch-lists`)"
    return extracted, filtered, note


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/thresher-ablation")
    parser.add_argument("--name", default="ablation", help="the ablation goes to WORK/NAME-seedSEED")
    parser.add_argument(
        "--ray-runs", action="store_true", help="build the two runs on Ray (default: in-process)"
    )
    known, rest = parser.parse_known_args()  # the rest: thresher ablate's options (--steps, --dim, ...)
    rest = [*BENCH_DEFAULTS, *rest]  # given options come later and win
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shared, work = Path(known.shared), Path(known.work)
    for need in ("extraction-trafilatura-eval", "extraction-scrapinghub-aeb", "warc-samples"):
        if not (shared / need).is_dir():
            print(f"bench/ablation.py: {shared / need} is missing (see --shared)", file=sys.stderr)
            return 2
    extracted, filtered, lists = build_runs(shared, work, local=not known.ray_runs)
    reference = reference_file(shared, work)
    ablate = argparse.ArgumentParser(prog="bench/ablation.py")
    register(ablate.add_subparsers())  # thresher ablate's options and defaults
    args = ablate.parse_args(
        ["ablate", str(filtered), str(extracted), "--reference", str(reference), "--output", "-", *rest]
    )
    args.output = str(work / f"{known.name}-seed{args.seed}")  # one ablation per seed: seeds show the spread
    try:
        report = run_ablation(
            args.runs, args.reference, args.output, config_from_args(args), resume=args.resume
        )
    except ThresherError as exc:
        print(f"bench/ablation.py: {exc.prefix}{exc}", file=sys.stderr)
        return 2

    cfg = report["config"]
    print(f"\nrecipe ablation: {len(report['models'])} runs, url_filter with {lists}")
    print(
        f"model: width {cfg['model']['dim']}, depth {cfg['model']['layers']}, context {cfg['model']['seq_len']}, "
        f"{cfg['train']['steps']} steps x {cfg['train']['batch_size']} sequences, seed {cfg['train']['seed']}, "
        f"vocabulary {report['tokenizer']['vocab_size']}, {report['token_budget']:,} training tokens per run"
    )
    print(f"reference: {report['reference']['documents']} Zyte gold article bodies, "
          f"{sum(s['tokens'] for s in report['reference']['sources'].values()):,} tokens")  # fmt: skip
    print(f"{'run':<10} {'docs used/in run':>17} {'ref loss':>9} {'bits/byte':>9} {'tokens seen':>12} "
          f"{'wall':>7} {'ref URLs in train':>18}  device")  # fmt: skip
    for m in report["models"]:
        e, t = m["eval"]["all"], m["train"]
        print(
            f"{m['name']:<10} {m['documents_used']:>8,}/{m['documents_in_run']:<8,} {e['loss']:9.4f} "
            f"{e['bits_per_byte']:9.4f} {t['tokens_seen']:>12,} {t['seconds']:>6.1f}s "
            f"{m['reference_urls_in_training']:>18}  {t['device']}"
        )
    by_name = {m["name"]: m["eval"]["all"]["loss"] for m in report["models"]}
    diff = by_name["fineweb"] - by_name["extracted"]
    print(
        f"fineweb - extracted: {diff:+.4f} nats/token ({'fineweb better' if diff < 0 else 'fineweb worse'})"
    )
    print(f"report: {Path(args.output) / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
