"""A static site served from 127.0.0.1 in a background thread, with an access log.

Used by ``thresher crawl --demo``, the crawler tests and the crawl benchmark: a real HTTP/1.1
server (keep-alive, Content-Length) whose log shows exactly which URLs the crawler requested.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass(frozen=True)
class Hit:
    time: float
    method: str
    path: str
    status: int
    user_agent: str


class LoggingHandler(SimpleHTTPRequestHandler):
    """Serves files from a directory and records every request in ``server.hits``."""

    protocol_version = "HTTP/1.1"

    def parse_request(self):
        self.arrived = time.time()  # the log records arrival, not when the response was ready
        return super().parse_request()

    def log_request(self, code="-", size="-"):
        status = int(code) if str(code).isdigit() else 0
        hit = Hit(
            getattr(self, "arrived", time.time()),
            self.command or "",
            self.path,
            status,
            self.headers.get("User-Agent", "") if self.headers else "",
        )
        with self.server.hits_lock:
            self.server.hits.append(hit)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionResetError, BrokenPipeError):  # the client gave up (timeouts, size caps)
            self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


class _Server(ThreadingHTTPServer):
    # The stdlib's listen backlog of 5 drops connection attempts once a crawler opens more at
    # once; the dropped ones are retried seconds later and can end as spurious timeouts.
    request_queue_size = 128


class LocalSite:
    """``with LocalSite(root) as site: site.url("/index.html")``."""

    def __init__(
        self, root: str | Path, handler: type[SimpleHTTPRequestHandler] = LoggingHandler, port: int = 0
    ):
        self.root = Path(root)
        factory = functools.partial(handler, directory=str(self.root))
        self.server = _Server(("127.0.0.1", port), factory)
        self.server.daemon_threads = True
        self.server.hits = []
        self.server.hits_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.server.serve_forever, name=f"localsite:{self.port}", daemon=True
        )

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base + path

    @property
    def hits(self) -> list[Hit]:
        with self.server.hits_lock:
            return list(self.server.hits)

    def paths(self) -> list[str]:
        return [h.path for h in self.hits]

    def start(self) -> LocalSite:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LocalSite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
