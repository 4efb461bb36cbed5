"""Turn ``--input`` arguments (files, directories, globs; local or fsspec URIs) into a file list."""

from __future__ import annotations

import glob
import os
from pathlib import Path

WARC_SUFFIXES = (".warc", ".warc.gz", ".warc.zst", ".warc.lz4", ".wet.gz", ".wet", ".arc.gz")
PARQUET_SUFFIXES = (".parquet",)
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".ndjson", ".ndjson.gz")
KNOWN_SUFFIXES = WARC_SUFFIXES + PARQUET_SUFFIXES + JSONL_SUFFIXES


class InputError(ValueError):
    pass


def input_format(path: str, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    name = path.lower()
    if name.endswith(WARC_SUFFIXES) or ".warc" in name:
        return "warc"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise InputError(f"{path}: cannot tell the format from the name; set input.format (warc, parquet, jsonl)")


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _expand_remote(spec: str) -> list[str]:
    import fsspec

    fs, _, paths = fsspec.core.get_fs_token_paths(spec)
    protocol = spec.split("://", 1)[0]
    out: list[str] = []
    for p in paths:
        if fs.isdir(p):
            out += [f for f in fs.find(p) if f.lower().endswith(KNOWN_SUFFIXES)]
        else:
            out.append(p)
    return [p if "://" in p else f"{protocol}://{p}" for p in out]


def expand_inputs(specs: list[str], base_dir: str | os.PathLike = ".") -> list[str]:
    """Sorted, de-duplicated input files. Relative local paths resolve against ``base_dir``."""
    files: list[str] = []
    for spec in specs:
        if _is_remote(spec):
            found = _expand_remote(spec)
        else:
            spec = spec.removeprefix("file://")
            path = Path(spec) if os.path.isabs(spec) else Path(base_dir) / spec
            if any(ch in spec for ch in "*?["):
                found = [p for p in glob.glob(str(path), recursive=True) if os.path.isfile(p)]
            elif path.is_dir():
                found = [
                    str(p) for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(KNOWN_SUFFIXES)
                ]
            elif path.is_file():
                found = [str(path)]
            else:
                raise InputError(f"input not found: {spec}")
        if not found:
            raise InputError(f"input matches no files: {spec}")
        files += found
    return sorted(dict.fromkeys(os.path.abspath(f) if not _is_remote(f) else f for f in files))
