"""Tokenizer benchmark: our BPE vs HF ``tokenizers`` (training, encoding, compression) and vs
tiktoken (encoding, with our trained ranks loaded into ``tiktoken.Encoding``), side by side.

Corpus (real text, built once and cached as JSONL):

* Lingua test sentences: 75 languages, 74k sentences, one document per 50 sentences;
* main text of the shared extraction-benchmark pages (trafilatura eval, Zyte AEB, L. Gao), via
  resiliparse;
* main text of every ``*.html`` under each ``--html-dir`` — for the ~50 MB figures we used the
  Debian packages ``debian-handbook`` (26 languages) and ``python3.11-doc`` (English)::

      apt-get download debian-handbook python3.11-doc
      for f in *.deb; do dpkg -x "$f" debs/; done
      python bench/tokenizer.py --html-dir debs/usr/share/doc --mb 50

Documents are shuffled with a fixed seed; every 10th is held out for encoding speed and
compression, the rest (up to ``--mb`` MB) trains both tokenizers with the same vocabulary size,
pattern and special token. Times are process CPU seconds for single-threaded work (encoding, so
that other load on the machine distorts less) and wall seconds for training (HF trains with
several threads; ours counts with Ray workers, ``--workers``).

Our encoder keeps a per-piece cache, so it is timed in four states (tiktoken and HF keep none):

* fresh: a new ``BPETokenizer`` (construction included) encodes the held-out text — every piece
  that is not a whole token is merged for the first time;
* steady: the cache first saw ``--steady-mb`` MB of *training* text, as a pipeline worker's has
  after a while, then encodes the held-out text, whose unseen words are still merged;
* warm: the held-out text again, after it was encoded once — every piece is cached;
* stream: a fresh tokenizer encodes the whole corpus, training and held-out documents in corpus
  order — a pipeline worker's long-run rate, cache turnover included.

``--save-tokenizer DIR`` keeps the trained tokenizer; ``--load-tokenizer DIR`` encodes with a saved
one and skips both trainings (HF then encodes with our exported ``tokenizer.json``, same vocabulary).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("THRESHER_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _lingua_documents(sentences_per_doc: int = 50) -> list[str]:
    docs = []
    for path in sorted((SHARED / "lid-lingua-testdata" / "sentences").glob("*.txt.gz")):
        lines = gzip.open(path, "rt", encoding="utf-8").read().splitlines()
        docs += ["\n".join(lines[i : i + sentences_per_doc]) for i in range(0, len(lines), sentences_per_doc)]
    return docs


def _html_files(extra_dirs: list[str]) -> list[Path]:
    files = sorted((SHARED / "extraction-trafilatura-eval" / "html").glob("*.html.gz"))
    files += sorted((SHARED / "extraction-scrapinghub-aeb" / "html").glob("*.html.gz"))
    files += sorted((SHARED / "extraction-htmltotext-leogao").glob("*/html/*"))
    for d in extra_dirs:
        files += sorted(Path(d).rglob("*.html"))
    return files


def _page_text(path: Path) -> str:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return extract_plain_text(bytes_to_str(raw, detect_encoding(raw)), main_content=True)


def build_corpus(cache: Path, extra_dirs: list[str]) -> list[str]:
    if cache.exists():
        return [json.loads(line)["text"] for line in cache.open(encoding="utf-8")]
    docs = _lingua_documents()
    for path in _html_files(extra_dirs):
        text = _page_text(path)
        if len(text) >= 200:
            docs.append(text)
    random.Random(0).shuffle(docs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("w", encoding="utf-8") as out:
        for text in docs:
            out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return docs


def split_corpus(docs: list[str], train_mb: float) -> tuple[list[str], list[str]]:
    held_out = docs[::10]
    train, size = [], 0
    for i, doc in enumerate(docs):
        if i % 10 == 0:
            continue
        if size >= train_mb * 1e6:
            break
        train.append(doc)
        size += len(doc.encode("utf-8"))
    return train, held_out


def mb(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def train_hf(texts: list[str], vocab_size: int, pattern: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def cpu_rate(fn, texts: list[str], repeats: int) -> float:
    """Best MB/s of ``repeats`` runs, in process CPU time."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn(texts)
        best = min(best, time.process_time() - start)
    return mb(texts) / best


def take_mb(docs: list[str], megabytes: float) -> list[str]:
    """The first documents, until about ``megabytes`` of UTF-8."""
    taken, size = [], 0
    for doc in docs:
        if size >= megabytes * 1e6:
            break
        taken.append(doc)
        size += len(doc.encode("utf-8"))
    return taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="training text, MB (default 50)")
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--html-dir", action="append", default=[], help="more HTML pages (repeatable)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "thresher-bench-tokenizer"))
    parser.add_argument("--workers", type=int, default=2, help="Ray workers for counting (0: no Ray)")
    parser.add_argument("--encode-mb", type=float, default=10.0, help="held-out text to encode, MB")
    parser.add_argument(
        "--steady-mb", type=float, default=10.0, help="training text seen before 'steady', MB"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--save-tokenizer", help="save the trained tokenizer here")
    parser.add_argument("--load-tokenizer", help="encode with this saved tokenizer; no training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import tiktoken

    from thresher.tokenize import BPETokenizer, load_tokenizer, save_tokenizer, train_tokenizer
    from thresher.tokenize.encoder import DEFAULT_BATCH_SIZE
    from thresher.tokenize.pretokenize import CL100K_PATTERN

    key = "corpus-" + "-".join(Path(d).name for d in args.html_dir) + ".jsonl"
    docs = build_corpus(Path(args.cache) / key, args.html_dir)
    train, held_out = split_corpus(docs, args.mb)
    test = take_mb(held_out, args.encode_mb)
    print(
        f"corpus: {len(docs)} documents, {mb(docs):.1f} MB; training on {len(train)} ({mb(train):.1f} MB), "
        f"encoding {len(test)} held-out ({mb(test):.1f} MB); vocab {args.vocab_size}"
    )

    if args.load_tokenizer:
        from tokenizers import Tokenizer

        ours = load_tokenizer(args.load_tokenizer)
        hf = Tokenizer.from_file(str(Path(args.load_tokenizer) / "tokenizer.json"))
        print(f"loaded {ours} from {args.load_tokenizer}: no training; HF encodes with its tokenizer.json")
    else:
        start = time.perf_counter()
        hf = train_hf(train, args.vocab_size, CL100K_PATTERN)
        hf_train = time.perf_counter() - start
        print(f"train   HF tokenizers BpeTrainer: {hf_train:7.1f} s wall")

        workers = args.workers
        if workers:
            from thresher.raycontext import init_ray

            init_ray(num_cpus=workers, quiet=True)
        start = time.perf_counter()
        ours = train_tokenizer(train, args.vocab_size, ray_workers=workers or None)
        ours_train = time.perf_counter() - start
        print(
            f"train   thresher BPETokenizer:    {ours_train:7.1f} s wall  ({ours_train / hf_train:.2f}x HF's time)"
        )
        if args.save_tokenizer:
            save_tokenizer(ours, args.save_tokenizer)

    enc = tiktoken.Encoding(
        "thresher-bench",
        pat_str=ours.pattern,
        mergeable_ranks=ours.mergeable_ranks(),
        special_tokens=ours.special_tokens,
    )
    steady_text = take_mb(train, args.steady_mb)

    def new_tokenizer() -> BPETokenizer:
        return BPETokenizer(ours.mergeable_ranks(), ours.pattern, ours.special_tokens)

    def encode_all(tok: BPETokenizer, texts: list[str]) -> None:  # in batches, as the pipeline does
        for i in range(0, len(texts), DEFAULT_BATCH_SIZE):
            tok.encode_ordinary_batch(texts[i : i + DEFAULT_BATCH_SIZE])

    def seconds(fn) -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    # interleaved: each repeat times every contender back to back, so a ratio within one repeat
    # sees the same machine load; the ratio printed is the median over repeats, the rates the best
    times: dict[str, list[float]] = {
        k: [] for k in ("tiktoken", "fresh", "steady", "warm", "tiktoken stream", "stream")
    }
    encode_all(ours, test)
    for _ in range(args.repeats):
        times["tiktoken"].append(seconds(lambda: [enc.encode_ordinary(t) for t in test]))
        times["fresh"].append(seconds(lambda: encode_all(new_tokenizer(), test)))
        seen = new_tokenizer()
        encode_all(seen, steady_text)
        times["steady"].append(seconds(lambda: encode_all(seen, test)))  # noqa: B023
        times["warm"].append(seconds(lambda: encode_all(ours, test)))
        times["tiktoken stream"].append(seconds(lambda: [enc.encode_ordinary(t) for t in docs]))
        times["stream"].append(seconds(lambda: encode_all(new_tokenizer(), docs)))
    rate_tt = mb(test) / min(times["tiktoken"])
    rate_hf = cpu_rate(lambda ts: [hf.encode(t, add_special_tokens=False) for t in ts], test, 1)
    print(f"encode  tiktoken (our ranks):     {rate_tt:7.2f} MB/s one thread")
    print(f"encode  HF tokenizers:            {rate_hf:7.2f} MB/s one thread")
    for key, base, name, size in (
        ("fresh", "tiktoken", "fresh cache:   ", mb(test)),
        ("steady", "tiktoken", f"steady ({mb(steady_text):.0f} MB):", mb(test)),
        ("warm", "tiktoken", "warm cache:    ", mb(test)),
        ("stream", "tiktoken stream", f"stream ({mb(docs):.0f} MB):", mb(docs)),
    ):
        rate = size / min(times[key])
        ratios = sorted(tt / t for tt, t in zip(times[base], times[key], strict=True))
        print(
            f"encode  thresher, {name} {rate:7.2f} MB/s  ({statistics.median(ratios):.2f}x tiktoken, "
            f"{ratios[0]:.2f}-{ratios[-1]:.2f} over {len(ratios)} paired runs; {rate / rate_hf:.1f}x HF)"
        )
    same = all(enc.encode_ordinary(t) == ours.encode_ordinary(t) for t in test[:200])
    n_ours = sum(map(len, ours.encode_ordinary_batch(test)))
    n_hf = sum(len(e.ids) for e in hf.encode_batch(test, add_special_tokens=False))
    size = mb(test) * 1e6
    print(f"ids identical to tiktoken on 200 held-out documents: {same}")
    if args.load_tokenizer:
        print(f"HF with our tokenizer.json: {'same' if n_hf == n_ours else 'DIFFERENT'} token count")
        return 0
    print(
        f"compression (held-out bytes/token): thresher {size / n_ours:.3f}, HF {size / n_hf:.3f} "
        f"({(n_hf - n_ours) / n_hf * 100:+.2f}% fewer tokens)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
