"""Publishing files atomically: the one place that writes a file under a temporary name and renames it.

Every file Thresher publishes (documents, stats, manifests, reports, token shards, tokenizers,
downloaded models) is written here, so a reader (a resumed run, a training job, ``datasets``)
sees either the old file or the complete new one, never half a file, and a writer that fails or
is killed leaves no partial file under the final name.

The rule for temporary names is :func:`_temp_name`: ``.NAME.tmp-PID-RANDOM`` in the destination's
own directory (a rename is atomic only within one file system). The name is unique per writer,
so two writers of the same destination (two threads, two processes, two Ray workers retrying one
block) never write into one temporary file: the last rename wins and the destination is one
writer's complete version. A killed writer leaves its dotted temporary behind;
:data:`TEMP_NAME` matches it, so the output-directory checks count it as the run's own.

The publish step is :func:`_publish` (``os.replace``). Both are the places a file system is
plugged in later (object storage, issue #18: a put of a whole object is atomic already, so there
the temporary may be the destination itself).

Writes are not fsync'ed: the guarantee is against readers and failed writers, not power loss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from thresher.dataconfig import option
from thresher.errors import InputProblem, MissingDependency, OutputProblem, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What a temporary file of ours looks like; also matches older names (``.x.tmp123``) a killed
# writer of an earlier version may have left.
TEMP_NAME = re.compile(r"^\..+\.tmp\S*$")


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a local file, read 4 MiB at a time (models, lists, shards, exports and
    the shard cache check their files with it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _temp_name(dest: Path) -> Path:
    """A temporary path beside ``dest`` that no other writer uses (pid + 48 random bits)."""
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{secrets.token_hex(6)}")


def _publish(tmp: Path, dest: Path) -> None:
    """Put the finished temporary file in place under its final name, in one step."""
    os.replace(tmp, dest)


@contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``dest``'s content to; rename it to ``dest`` when the
    block ends without an exception, remove it when it raises.

    Checks belong inside the block: raise there (a checksum that does not match, a file that
    fails validation) and nothing is published. The destination's directory is created."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(dest)
    try:
        yield tmp
        _publish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_open(dest: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """``open(dest, mode)`` for a file written as a stream (a download, an export); published
    when the block ends without an exception. ``mode`` is ``"wb"`` or ``"w"``."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes a new file (mode 'wb' or 'w'), got {mode!r}")
    with atomic_path(dest) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f
        # the file is closed by the inner ``with`` before atomic_path publishes it


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text_atomic(dest: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(dest)


def write_json_atomic(dest: str | os.PathLike, obj: Any, **json_kwargs: Any) -> Path:
    """``obj`` as JSON (``json.dumps(obj, **json_kwargs)``) and a final newline."""
    return write_text_atomic(dest, json.dumps(obj, **json_kwargs) + "\n")


def write_parquet_atomic(
    table: pa.Table, dest: str | os.PathLike, *, compression: str | None = "zstd", **parquet_kwargs: Any
) -> Path:
    """``table`` as one Parquet file; ``compression`` and the keyword arguments go to
    ``pyarrow.parquet.write_table`` (``"none"`` or ``None``: uncompressed)."""
    import pyarrow.parquet as pq

    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression=compression or "none", **parquet_kwargs)
    return Path(dest)


def copy_file_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """A copy of ``src`` published as ``dest`` (contents only, not permissions or times)."""
    import shutil

    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


# =========================================================================== storage: any file system
#
# A :class:`Store` is a directory on a file system named by a URI: a local path (or ``file://``),
# ``s3://bucket/prefix``, ``gs://bucket/prefix`` or any other fsspec URI. Every operation takes a
# path relative to the store's root. On a local disk the writes are the atomic ones above
# (temporary + rename), so a local store behaves exactly as the functions above do. On an object
# store there is no rename, and none is needed: one PUT of a whole object (or a multipart upload,
# completed in one call) is atomic, an object is visible complete or not at all, so publishing is
# writing the object under its final name. A writer killed mid-upload leaves no object; an upload
# started and not completed is invisible to readers (a bucket lifecycle rule cleans those).
#
# Retries (issue #18 "robust I/O"): botocore retries each request ("standard" mode: 500, 502,
# 503, 504, throttling such as 503 SlowDown, connection errors and timeouts before a response,
# exponential backoff with full jitter, ``storage.retries`` attempts). What botocore cannot retry
# is an error while the body of a response streams in after it has returned (a connection reset
# mid-download, a read timeout, a truncated body): :meth:`Store._retry` repeats such a whole-object
# read or write, with exponential backoff and full jitter between ``backoff_base_s`` and
# ``backoff_max_s``. s3fs's own retry loop is switched off (``retries = 1``): it would multiply the
# attempts of the other two, with a fixed backoff and no jitter.
#
# Credentials come from the backend's standard chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
# AWS_SESSION_TOKEN, AWS_PROFILE and ~/.aws files, instance or pod roles; the endpoint from
# AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, which botocore reads itself). A Store never holds
# them in its state or its URI, and every message it produces is scrubbed of them
# (:func:`scrub_secrets`).


PROBE_PREFIX = ".thresher-probe-"
SECRET_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "GOOGLE_APPLICATION_CREDENTIALS",
)
"""Environment variables whose values never appear in a message, a log line or a report."""

# Packages a URI scheme needs, for the "missing dependency" line (s3fs is a main dependency).
_SCHEME_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
}
_BUCKET_SCHEMES = frozenset(_SCHEME_PACKAGES)
STREAM_DOWNLOAD_BYTES = 256 << 20
"""Objects up to this size are downloaded from S3 in one streamed GET (token shards are ~70-130 MiB)."""
_GLOB = re.compile(r"[*?\[]")  # what fsspec reads as a glob pattern in a path


@dataclass(frozen=True)
class StorageConfig:
    """How reads and writes on object storage retry and how many run at once (config ``storage:``)."""

    retries: int = option(5, ge=0, le=50)
    """Attempts after the first, for each request (botocore) and each whole-object read or write
    interrupted mid-stream (ours)."""
    backoff_base_s: float = option(0.1, gt=0)
    """First wait before a retry of ours; doubled each time, times a random factor in [0, 1)."""
    backoff_max_s: float = option(20.0, gt=0)
    """Longest wait between two attempts of ours."""
    max_concurrency: int = option(16, ge=1, le=1024)
    """Requests in flight at once per process (connection pool, multipart parts, our operations)."""
    connect_timeout_s: float = option(10.0, gt=0)
    read_timeout_s: float = option(60.0, gt=0)
    """A request with no byte for this long counts as failed (and is retried)."""


def scrub_secrets(text: str) -> str:
    """``text`` with the values of :data:`SECRET_ENV` (keys, tokens, the endpoint) replaced."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value.rstrip("/"), f"${name}")
    return text


def _is_uri(target: str) -> bool:
    return "://" in target and not target.startswith("file://")


def _concurrency_gate(limit: int) -> threading.BoundedSemaphore:
    with _GATES_LOCK:
        gate = _GATES.get(limit)
        if gate is None:
            gate = _GATES[limit] = threading.BoundedSemaphore(limit)
        return gate


_GATES: dict[int, threading.BoundedSemaphore] = {}
_GATES_LOCK = threading.Lock()


def _mid_stream(exc: BaseException) -> bool:
    """An error of the kind botocore does not retry: the body of a response broke off (reset,
    timeout, truncation) after the request had succeeded. Status errors (``ClientError``: 4xx,
    and 5xx/throttling after botocore's own attempts) and endpoints that cannot be reached are
    never retried here."""
    import http.client

    kinds: list[type[BaseException]] = [http.client.IncompleteRead, ConnectionResetError, TimeoutError]
    stop: list[type[BaseException]] = []
    try:
        from botocore import exceptions as be

        kinds += [be.ResponseStreamingError, be.IncompleteReadError, be.ReadTimeoutError]
        stop += [be.ClientError, be.EndpointConnectionError, be.ConnectTimeoutError, be.NoCredentialsError]
    except ImportError:
        pass
    try:
        import aiohttp

        kinds += [aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError]
    except ImportError:
        pass
    seen = 0
    while exc is not None and seen < 8:
        if stop and isinstance(exc, tuple(stop)):
            return False
        if isinstance(exc, tuple(kinds)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _s3_filesystem(config: StorageConfig) -> Any:
    try:
        import s3fs
    except ImportError as exc:
        raise MissingDependency("s3fs is needed for s3:// URIs (pip install s3fs)") from exc
    fs = s3fs.S3FileSystem(
        skip_instance_cache=True,  # our own instance (shared by our Stores only): its retry setting is ours
        # No listings cache: a run lists a prefix, then others write below it (another process, a
        # Ray worker) and a cached listing would answer "not there" for objects that now exist.
        use_listings_cache=False,
        max_concurrency=config.max_concurrency,
        config_kwargs={
            "retries": {"mode": "standard", "max_attempts": config.retries + 1},
            "max_pool_connections": config.max_concurrency,
            "connect_timeout": config.connect_timeout_s,
            "read_timeout": config.read_timeout_s,
        },
    )
    fs.retries = 1  # see the section's comment: botocore and Store._retry do the retrying
    return fs


def _filesystem(protocol: str, config: StorageConfig) -> Any:
    """The process's client for ``protocol`` under ``config``, made once per process and shared by
    every Store on it: a new S3 client loads botocore's service model, resolves credentials and
    opens its own connections (a second or more on a busy machine), and a run makes many Stores
    (the layout, the tokenizer, the report, each DataLoader worker's corpus). A change of the
    environment the client was made from (another endpoint, other credentials) makes a new one."""
    key = (os.getpid(), protocol, config, _client_environment())
    with _CLIENTS_LOCK:
        fs = _CLIENTS.get(key)
        if fs is None:
            fs = _CLIENTS[key] = _new_filesystem(protocol, config)
        return fs


_CLIENTS: dict[tuple[int, str, StorageConfig, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()
_CLIENT_ENV = (
    *SECRET_ENV,
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def _client_environment() -> str:
    """A digest of the environment a client reads its endpoint and credentials from (a digest:
    the cache's keys hold no secret)."""
    values = "\0".join(f"{name}={os.environ.get(name, '')}" for name in _CLIENT_ENV)
    return hashlib.sha256(values.encode()).hexdigest()


def _new_filesystem(protocol: str, config: StorageConfig) -> Any:
    if protocol in ("s3", "s3a"):
        return _s3_filesystem(config)
    import fsspec

    try:
        return fsspec.filesystem(protocol)
    except ImportError as exc:
        package = _SCHEME_PACKAGES.get(protocol, getattr(exc, "name", None) or "its fsspec backend")
        raise MissingDependency(
            f"{package} is needed for {protocol}:// URIs (pip install {package})"
        ) from exc
    except ValueError as exc:  # fsspec: "Protocol not known: foo"
        raise UsageError(f"{protocol}:// is not a storage scheme fsspec knows ({exc})") from exc


class Store:
    """A directory on a local disk or an object store; every path is relative to its root.

    ``Store.from_uri("s3://bucket/run")`` and ``Store.from_uri("out")`` offer the same calls;
    writes are atomic on both (see the section's comment). Picklable, and safe across ``fork``:
    the file system client is made again in a new process (an fsspec async client is not
    fork-safe), so a Store can go to Ray workers and DataLoader workers."""

    def __init__(self, protocol: str, root: str, config: StorageConfig | None = None) -> None:
        self.protocol = protocol
        self.root = root.rstrip("/") if protocol != "file" else root
        self.config = config or StorageConfig()
        self._fs: Any = None
        self._pid = 0

    # ------------------------------------------------------------------ naming

    @classmethod
    def from_uri(cls, uri: str | os.PathLike, config: StorageConfig | None = None) -> Store:
        """The store a local path, ``file://`` URI or fsspec URI names. A malformed URI is a
        :class:`~thresher.errors.UsageError`; a backend that is not installed a
        :class:`~thresher.errors.MissingDependency` (both raised here, before any I/O)."""
        if isinstance(uri, Store):
            return uri
        target = os.fspath(uri)
        if not _is_uri(target):
            path = target[len("file://") :] if target.startswith("file://") else target
            return cls("file", str(Path(path).expanduser()), config)
        protocol, _, rest = target.partition("://")
        protocol = protocol.lower()
        if not protocol.replace("+", "").replace("-", "").isalnum():
            raise UsageError(f"{target!r}: not a URI (scheme {protocol!r})")
        if "@" in rest.split("/", 1)[0]:
            raise UsageError(
                f"{protocol}://…: credentials inside a URI are refused; use the backend's standard "
                "credentials (environment, config files, an instance role)"
            )
        if protocol in _BUCKET_SCHEMES and not rest.split("/", 1)[0]:
            raise UsageError(f"{target!r}: no bucket in the URI (expected {protocol}://BUCKET/PATH)")
        store = cls(protocol, rest, config)
        store._connect()  # a missing backend fails here, before any work
        return store

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def uri(self) -> str:
        """The root as a URI (or a local path); holds no credentials."""
        return self.root if self.is_local else f"{self.protocol}://{self.root}"

    def join(self, *parts: str) -> str:
        """A relative path from parts (``store.join("tokens", name)``), ``/``-separated."""
        return "/".join(p.strip("/") for p in parts if p and p.strip("/"))

    def child(self, *parts: str) -> Store:
        """The store rooted at a directory below this one (same client, same config)."""
        rel = self.join(*parts)
        if not rel:
            return self
        root = str(Path(self.root) / rel) if self.is_local else f"{self.root}/{rel}"
        sub = Store(self.protocol, root, self.config)
        sub._fs, sub._pid = self._fs, self._pid
        return sub

    def uri_of(self, rel: str = "") -> str:
        """What a message calls ``rel``: a local path or ``scheme://bucket/key``."""
        return self._full(rel) if self.is_local else f"{self.protocol}://{self._full(rel)}"

    def local_path(self, rel: str = "") -> Path | None:
        """``rel`` as a local path, or None on an object store."""
        return Path(self._full(rel)) if self.is_local else None

    def _full(self, rel: str) -> str:
        rel = rel.strip("/")
        if self.is_local:
            return str(Path(self.root) / rel) if rel else self.root
        return f"{self.root}/{rel}" if rel else self.root

    def __repr__(self) -> str:
        return f"Store({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Store) and (self.protocol, self.root) == (other.protocol, other.root)

    def __hash__(self) -> int:
        return hash((self.protocol, self.root))

    def __getstate__(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "root": self.root, "config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["protocol"], state["root"], state["config"])

    # ------------------------------------------------------------------ the client and retries

    def _connect(self) -> Any:
        if self._fs is None or self._pid != os.getpid():
            if self.is_local:
                import fsspec

                self._fs = fsspec.filesystem("file")
            else:
                self._fs = _filesystem(self.protocol, self.config)
            self._pid = os.getpid()
        return self._fs

    @property
    def fs(self) -> Any:
        """The fsspec file system (for code that hands it to pyarrow or fsspec itself)."""
        return self._connect()

    @property
    def _is_s3(self) -> bool:
        return self.protocol in ("s3", "s3a")

    def _one_request(self) -> dict[str, Any]:
        """s3fs's arguments for reading an object whole in one GET, without a HEAD first."""
        return {"max_concurrency": 1} if self._is_s3 else {}

    def _retry(self, what: str, rel: str, fn: Callable[[], T]) -> T:
        """``fn()``, repeated after a mid-stream failure (:func:`_mid_stream`) with exponential
        backoff and full jitter, at most ``config.retries`` times; at most
        ``config.max_concurrency`` calls of this process run at once."""
        if self.is_local:
            return fn()
        cfg = self.config
        gate = _concurrency_gate(cfg.max_concurrency)
        for attempt in range(cfg.retries + 1):
            try:
                with gate:
                    return fn()
            except Exception as exc:
                if attempt >= cfg.retries or not _mid_stream(exc):
                    raise
                wait = random.random() * min(cfg.backoff_max_s, cfg.backoff_base_s * 2**attempt)
                logger.warning(
                    "%s %s failed (%s), retry %d of %d in %.2f s",
                    what,
                    self.uri_of(rel),
                    scrub_secrets(f"{type(exc).__name__}: {exc}"),
                    attempt + 1,
                    cfg.retries,
                    wait,
                )
                time.sleep(wait)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ reading

    def exists(self, rel: str = "") -> bool:
        if self.is_local:
            return Path(self._full(rel)).exists()
        return self._retry("exists", rel, lambda: self.fs.exists(self._full(rel)))

    def isdir(self, rel: str = "") -> bool:
        if self.is_local:
            return Path(self._full(rel)).is_dir()
        return self._retry("isdir", rel, lambda: self.fs.isdir(self._full(rel)))

    def size(self, rel: str) -> int:
        """Bytes of a file; ``FileNotFoundError`` when there is none."""
        if self.is_local:
            return Path(self._full(rel)).stat().st_size
        return int(self._retry("size", rel, lambda: self.fs.size(self._full(rel))))

    def ls(self, rel: str = "") -> list[str]:
        """Names of the entries directly below ``rel`` (files and directories), sorted;
        ``FileNotFoundError`` when ``rel`` is not there."""
        if self.is_local:
            return sorted(p.name for p in Path(self._full(rel)).iterdir())
        full = self._full(rel)
        entries = self._retry("list", rel, lambda: self.fs.ls(full, detail=False, refresh=True))
        names = {e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.rstrip("/") != full}
        return sorted(names)

    def find(self, rel: str = "") -> list[str]:
        """Every file below ``rel``, as paths relative to the store's root, sorted ([] if none)."""
        if self.is_local:
            base = Path(self._full(rel))
            if not base.exists():
                return []
            root = Path(self.root)
            return sorted(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file())
        found = self._retry("list", rel, lambda: self._below(self._full(rel)))
        prefix = self.root + "/"
        return sorted(f[len(prefix) :] for f in found if f.startswith(prefix))

    def sizes(self, rel: str = "") -> dict[str, int]:
        """{path relative to the root: bytes} of every file below ``rel``, in one listing."""
        if self.is_local:
            root = Path(self.root)
            return {f: (root / f).stat().st_size for f in self.find(rel)}
        found = self._retry("list", rel, lambda: self._below(self._full(rel)))
        prefix = self.root + "/"
        return {k[len(prefix) :]: int(v["size"]) for k, v in found.items() if k.startswith(prefix)}

    def _below(self, full: str) -> dict[str, dict[str, Any]]:
        """{key: info} of the object ``full`` and every object below it, in one listing (paginated).
        s3fs's find of a prefix with nothing below it HEADs the key and lists again (a missing file
        or an empty directory?); the parent's keys that start with the name are one LIST either way."""
        parent, _, name = full.rpartition("/")
        if not (self._is_s3 and parent and name):
            return self.fs.find(full, withdirs=False, detail=True)
        found = self.fs.find(parent, prefix=name, withdirs=False, detail=True)
        return {k: v for k, v in found.items() if k == full or k.startswith(full + "/")}

    def digest(self, rel: str, algorithm: str = "sha256") -> str:
        """The hex digest of a file, read as a stream (started again if it breaks off)."""
        import hashlib

        def run() -> str:
            h = hashlib.new(algorithm)
            opener = open(self._full(rel), "rb") if self.is_local else self.fs.open(self._full(rel), "rb")
            with opener as f:
                while block := f.read(1 << 22):
                    h.update(block)
            return h.hexdigest()

        return self._retry("read", rel, run)

    def read_bytes(self, rel: str) -> bytes:
        """The whole file: on S3 one GET (s3fs would first HEAD the object for its size, to split a
        large one into parallel ranges; the files read whole here are records and parts)."""
        if self.is_local:
            return Path(self._full(rel)).read_bytes()
        return self._retry("read", rel, lambda: self.fs.cat_file(self._full(rel), **self._one_request()))

    def read_text(self, rel: str, encoding: str = "utf-8") -> str:
        return self.read_bytes(rel).decode(encoding)

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    @contextmanager
    def open_input(self, rel: str, mode: str = "rb", **kwargs: Any) -> Iterator[IO[Any]]:
        """A file opened for reading, streamed (ranged reads on an object store: requests are
        retried by botocore, a body broken off mid-read is not; use :meth:`read_bytes` or
        :meth:`download` for whole-object reads that must survive resets)."""
        if mode not in ("rb", "r"):
            raise ValueError(f"open_input reads (mode 'rb' or 'r'), got {mode!r}")
        if self.is_local:
            with open(self._full(rel), mode, **kwargs) as f:
                yield f
            return
        f = self._retry("open", rel, lambda: self.fs.open(self._full(rel), mode, **kwargs))
        with f:
            yield f

    def download(self, rel: str, dest: str | os.PathLike) -> Path:
        """A copy of ``rel`` on the local disk at ``dest``, published atomically there; a download
        interrupted mid-stream starts again (:meth:`_retry`).

        On S3 an object up to :data:`STREAM_DOWNLOAD_BYTES` comes in one streamed GET; a larger one
        in parallel ranges of that size (s3fs splits at 50 MiB by default: each range is a request
        of its own, and a loader already downloads several shards at once)."""
        if self.is_local:
            return copy_file_atomic(self._full(rel), dest)
        kwargs = {"chunksize": STREAM_DOWNLOAD_BYTES} if self._is_s3 else {}

        def fetch() -> Path:
            with atomic_path(dest) as tmp:
                self.fs.get_file(self._full(rel), str(tmp), **kwargs)
            return Path(dest)

        return self._retry("download", rel, fetch)

    # ------------------------------------------------------------------ writing (atomic)

    def makedirs(self, rel: str = "") -> None:
        """Create a directory (a no-op on object stores, which have none)."""
        if self.is_local:
            Path(self._full(rel)).mkdir(parents=True, exist_ok=True)

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Publish ``data`` as ``rel`` atomically; returns ``rel``'s URI."""
        if self.is_local:
            write_bytes_atomic(self._full(rel), data)
        else:
            self._retry("write", rel, lambda: self.fs.pipe_file(self._full(rel), bytes(data)))
        return self.uri_of(rel)

    def write_text(self, rel: str, text: str, encoding: str = "utf-8") -> str:
        return self.write_bytes(rel, text.encode(encoding))

    def write_json(self, rel: str, obj: Any, **json_kwargs: Any) -> str:
        """``obj`` as JSON and a final newline, as :func:`write_json_atomic` writes it."""
        return self.write_text(rel, json.dumps(obj, **json_kwargs) + "\n")

    def write_parquet(
        self, rel: str, table: pa.Table, *, compression: str | None = "zstd", **parquet_kwargs: Any
    ) -> str:
        if self.is_local:
            write_parquet_atomic(table, self._full(rel), compression=compression, **parquet_kwargs)
            return self.uri_of(rel)
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=compression or "none", **parquet_kwargs)
        return self.write_bytes(rel, sink.getvalue().to_pybytes())

    def create_new(self, rel: str, data: bytes = b"") -> bool:
        """Create ``rel`` only if nothing is there: True for the one caller that created it. An
        exclusive create on a local disk, a conditional PUT (``If-None-Match: *``) on S3. A PUT
        retried after a lost response may find its own object and answer False: a caller must
        treat False as "someone may hold it" and have a way to finish without it."""
        if self.is_local:
            path = Path(self._full(rel))
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with path.open("xb") as f:
                    f.write(data)
            except FileExistsError:
                return False
            return True
        try:
            self._retry("create", rel, lambda: self.fs.pipe_file(self._full(rel), bytes(data), mode="create"))
        except FileExistsError:
            return False
        return True

    def upload(self, src: str | os.PathLike, rel: str) -> str:
        """Publish a local file as ``rel`` (one PUT or one completed multipart upload)."""
        if self.is_local:
            copy_file_atomic(src, self._full(rel))
        else:
            self._retry("upload", rel, lambda: self.fs.put_file(os.fspath(src), self._full(rel)))
        return self.uri_of(rel)

    @contextmanager
    def open_output(self, rel: str, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
        """A new file written as a stream, published when the block ends without an exception and
        never otherwise. On an object store the stream goes to a local temporary file that is
        uploaded whole at the end (retried as a whole), so a failed block leaves no object."""
        if self.is_local:
            with atomic_open(self._full(rel), mode, **open_kwargs) as f:
                yield f
            return
        if mode not in ("wb", "w"):
            raise ValueError(f"open_output writes a new file (mode 'wb' or 'w'), got {mode!r}")
        if mode == "w":
            open_kwargs.setdefault("encoding", "utf-8")
        with tempfile.NamedTemporaryFile(mode, prefix=".thresher-upload-", **open_kwargs) as spool:
            yield spool
            spool.flush()
            self.upload(spool.name, rel)

    def rm(self, rel: str = "", *, recursive: bool = False) -> None:
        """Remove a file (or, with ``recursive``, a directory and everything below); nothing
        happens when it is not there."""
        if self.is_local:
            import shutil

            p = Path(self._full(rel))
            if p.is_dir() and not p.is_symlink():
                if not recursive:
                    raise IsADirectoryError(f"{p} is a directory (recursive=True removes it)")
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
            return

        full = self._full(rel)

        def remove() -> None:
            if not self._is_s3:
                try:
                    self.fs.rm(full, recursive=recursive)
                except FileNotFoundError:
                    pass
                return
            # s3fs's rm lists, HEADs and lists again before its bulk delete; here a file is one
            # DELETE (S3 answers a missing key with success) and a tree one listing and a bulk
            # DELETE per 1,000 keys.
            if not recursive:
                self.fs.rm_file(full)
                return
            keys = sorted(self._below(full))
            literal = [k for k in keys if not _GLOB.search(k)]
            if literal:
                self.fs.rm(literal)  # a list of plain keys: no listing, bulk deletes only
            for key in keys:
                if _GLOB.search(key):  # rm would read it as a glob
                    self.fs.rm_file(key)

        self._retry("remove", rel, remove)

    # ------------------------------------------------------------------ checks before work

    def probe(self, *, write: bool = True) -> None:
        """Fail now, with one line, if the store cannot be used: ``write`` creates and deletes a
        small object (the bucket exists, the credentials are found and valid, writing is allowed),
        otherwise the root must be readable. Errors are :class:`~thresher.errors.OutputProblem`
        (write) or :class:`~thresher.errors.InputProblem` (read)."""
        problem = OutputProblem if write else InputProblem
        name = f"{PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            if write:
                self.makedirs()
                self.write_bytes(name, b"thresher storage probe\n")
                self.rm(name)
            elif not self.exists():
                if not self.is_local:
                    self.ls()  # names a missing bucket ("The specified bucket does not exist")
                raise FileNotFoundError(self.uri)
        except MissingDependency:
            raise
        except Exception as exc:
            raise problem(f"{self.uri}: {_storage_problem(exc, write)}") from exc


def _storage_problem(exc: BaseException, write: bool) -> str:
    """What a failed probe means, in a few words and without secrets."""
    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    names = {type(x).__name__ for x in chain}
    text = " ".join(str(x) for x in chain)
    if "NoCredentialsError" in names or "PartialCredentialsError" in names:
        return (
            "no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
            "or run with an instance or pod role)"
        )
    if "NoSuchBucket" in text or "bucket does not exist" in text:
        return "the bucket does not exist"
    if any(k in text for k in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")):
        return "the credentials were refused (invalid or expired access key)"
    if any(isinstance(x, PermissionError) for x in chain) or "AccessDenied" in text or "Forbidden" in text:
        return "permission denied (the credentials may not write here)" if write else "permission denied"
    if any(isinstance(x, FileNotFoundError) for x in chain):
        return "not found"
    if any(isinstance(x, NotADirectoryError | FileExistsError) for x in chain):
        return "a file is in the way of the directory"
    if "EndpointConnectionError" in names or "ConnectTimeoutError" in names:
        return "cannot reach the storage service (check the endpoint and the network)"
    return scrub_secrets(f"{type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
