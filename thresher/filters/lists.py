"""FineWeb's URL-filter lists, fetched at install time rather than shipped.

The banned-word lists are part of datatrove (Apache-2.0, Hugging Face); the domain/URL blocklist is
the Université Toulouse 1 Capitole "UT1" blacklist (CC BY-SA 4.0, Fabrice Prigent) as packed into
datatrove. Thresher does not redistribute them: :func:`fetch_fineweb_lists` copies the four files
out of the datatrove wheel on PyPI (downloaded without dependencies, never installed), or out of
an installed datatrove, and checks their sha256.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from thresher.io import atomic_path, sha256_file
from thresher.models import CACHE_MODELS

logger = logging.getLogger(__name__)

DATATROVE_WHEEL = "datatrove==0.10.1"
LISTS_DIR = Path(os.environ.get("THRESHER_URL_LISTS", CACHE_MODELS / "url-lists"))
FILES = {
    "banned_words.txt": "7aae5109ccc4d8357167168fa3a91331fa2fafd8eb8cc9c38cc9147c2610fab0",
    "soft_banned_words.txt": "e5043030accca33b0e368a693997576beea4c58279da641bff40b4e02281b063",
    "banned_subwords.txt": "4770445cd8d2b16495efde88bc4efc3a520bdc0f3137d14d85cd3d89b194a232",
    "url_filterblacklistsv0_3_0.tar.gz": "b37eefe1f3103dfa46b21b3f407b8b23cec2958ea22028700e6cc44d80f55e9e",
}


class ListsNotFound(FileNotFoundError):
    pass


@dataclass(frozen=True)
class FineWebURLLists:
    blocklist: Path
    banned_words: Path
    soft_banned_words: Path
    banned_subwords: Path


def _paths(root: Path) -> FineWebURLLists:
    return FineWebURLLists(
        blocklist=root / "url_filterblacklistsv0_3_0.tar.gz",
        banned_words=root / "banned_words.txt",
        soft_banned_words=root / "soft_banned_words.txt",
        banned_subwords=root / "banned_subwords.txt",
    )


def _verified(root: Path) -> bool:
    return all(
        (root / name).is_file() and sha256_file(root / name) == digest for name, digest in FILES.items()
    )


def fineweb_url_lists() -> FineWebURLLists:
    if _verified(LISTS_DIR):
        return _paths(LISTS_DIR)
    raise ListsNotFound(
        f"FineWeb's URL-filter lists are not in {LISTS_DIR}. Run `thresher filters fetch-lists` once "
        "(it needs PyPI), or set use_fineweb_lists: false and give your own lists."
    )


@contextmanager
def _checked(dest: Path, name: str) -> Iterator[Path]:
    """A temporary path to copy list file ``name`` to; published as ``dest/name`` only when its
    sha256 is the expected one (a file that does not match is removed)."""
    with atomic_path(dest / name) as tmp:
        yield tmp
        got = sha256_file(tmp)
        if got != FILES[name]:
            raise ListsNotFound(f"{name}: sha256 {got} does not match the expected {FILES[name]}")


def _copy_from_wheel(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for name in FILES:
            with (
                _checked(dest, name) as tmp,
                zf.open(f"datatrove/assets/{name}") as src,
                open(tmp, "wb") as out,
            ):
                shutil.copyfileobj(src, out, 1 << 20)


def _installed_datatrove_assets() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("datatrove")
    if spec is None or not spec.submodule_search_locations:
        return None
    assets = Path(list(spec.submodule_search_locations)[0]) / "assets"
    return assets if _verified(assets) else None


def fetch_fineweb_lists(dest: Path | None = None) -> FineWebURLLists:
    """Copy the four list files from an installed datatrove of the right version, else from its
    wheel downloaded without dependencies; verify them."""
    dest = Path(dest or LISTS_DIR)
    if _verified(dest):
        return _paths(dest)
    dest.mkdir(parents=True, exist_ok=True)
    assets = _installed_datatrove_assets()
    if assets is not None:
        for name in FILES:
            with _checked(dest, name) as tmp:
                shutil.copyfile(assets / name, tmp)
    else:
        _download_into(dest)
    return _paths(dest)


def _download_into(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, DATATROVE_WHEEL]
        logger.info("downloading %s to take the URL-filter lists out of it", DATATROVE_WHEEL)
        subprocess.run(cmd, check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ListsNotFound(f"pip download {DATATROVE_WHEEL} produced no wheel")
        _copy_from_wheel(wheels[0], dest)
