"""A fault-injecting HTTP proxy for an S3 API server, so tests can prove that retries work.

It sits between the pipeline's S3 client and the real (moto) server and, for a seeded share of
requests, answers ``503 SlowDown`` or ``500 InternalError`` itself, resets the connection before
answering, sends half of the real response and then resets (a download broken off mid-stream), or
delays the request. ``deny_writes`` answers every PUT, POST and DELETE with ``403 AccessDenied``
(a bucket the credentials may read but not write). Everything else is passed through unchanged,
one request per connection (the proxy answers ``Connection: close``), so each request is one
decision.

Decisions are a pure function of the seed and the request's arrival number, so a run with the
same requests in the same order meets the same faults.
"""

from __future__ import annotations

import random
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024


@dataclass
class FaultPlan:
    """Shares (0-1) of requests that meet each fault; the rest pass through."""

    seed: int = 0
    slowdown: float = 0.0
    error500: float = 0.0
    reset: float = 0.0
    truncate: float = 0.0
    delay: float = 0.0
    delay_s: float = 0.05
    deny_writes: bool = False

    def decide(self, n: int) -> str:
        u = random.Random(self.seed * 1_000_003 + n).random()
        for name in ("slowdown", "error500", "reset", "truncate", "delay"):
            share = getattr(self, name)
            if u < share:
                return name
            u -= share
        return "pass"


def _error(status: str, code: str, message: str) -> bytes:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
        f"<RequestId>thresher-fault</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + body


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed server or a middlebox does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def _read_request(sock: socket.socket) -> tuple[bytes, list[tuple[str, str]], bytes] | None:
    """(request line, headers, body) of one HTTP/1.1 request; None if the client closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_HEADER_BYTES:
            raise ValueError("request headers too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    line, *raw = head.split(b"\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (h.decode("latin-1").partition(":") for h in raw)]
    lower = {k.lower(): v for k, v in headers}
    if lower.get("expect", "").lower() == "100-continue":
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in lower.get("transfer-encoding", "").lower():
        body = rest
        while not body.endswith(b"0\r\n\r\n") or body.count(b"\r\n") < 2:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    else:
        length = int(lower.get("content-length", "0") or 0)
        body = rest
        while len(body) < length:
            chunk = sock.recv(min(1 << 20, length - len(body)))
            if not chunk:
                break
            body += chunk
    return line, headers, body


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            request = _read_request(sock)
        except (OSError, ValueError):
            return
        if request is None:
            return
        line, headers, body = request
        method = line.split(b" ", 1)[0].decode("latin-1").upper()
        proxy = self.server.proxy
        fault = proxy.next_fault(method)
        if fault == "deny":
            sock.sendall(_error("403 Forbidden", "AccessDenied", "Access Denied"))
            return
        if fault == "slowdown":
            sock.sendall(_error("503 Slow Down", "SlowDown", "Please reduce your request rate."))
            return
        if fault == "error500":
            sock.sendall(
                _error("500 Internal Server Error", "InternalError", "We encountered an internal error.")
            )
            return
        if fault == "reset":
            _reset(sock)
            return
        if fault == "delay":
            time.sleep(proxy.plan.delay_s)
        kept = [(k, v) for k, v in headers if k.lower() not in ("connection", "expect", "keep-alive")]
        upstream_req = line + b"\r\n" + b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in kept)
        upstream_req += b"Connection: close\r\n\r\n" + body
        with socket.create_connection(proxy.upstream, timeout=30) as up:
            up.sendall(upstream_req)
            response = b""
            while chunk := up.recv(1 << 20):
                response += chunk
        head, sep, payload = response.partition(b"\r\n\r\n")
        status, *raw = head.split(b"\r\n")
        raw = [h for h in raw if not h.lower().startswith((b"connection:", b"keep-alive:"))]
        out = b"\r\n".join([status, *raw, b"Connection: close"]) + sep
        if fault == "truncate" and len(payload) > 1 and method == "GET":
            sock.sendall(out + payload[: len(payload) // 2])
            _reset(sock)
            return
        sock.sendall(out + payload)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy


class FaultProxy:
    """``with FaultProxy(("127.0.0.1", port), FaultPlan(slowdown=0.1)) as proxy:`` then point the
    S3 client at ``proxy.endpoint``; ``proxy.counts`` tells what it did."""

    def __init__(self, upstream: tuple[str, int], plan: FaultPlan) -> None:
        self.upstream, self.plan = upstream, plan
        self.counts: Counter[str] = Counter()
        self._n = 0
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-fault-proxy", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def next_fault(self, method: str) -> str:
        with self._lock:
            n = self._n
            self._n += 1
            if self.plan.deny_writes and method in ("PUT", "POST", "DELETE"):
                fault = "deny"
            else:
                fault = self.plan.decide(n)
            self.counts[fault] += 1
            return fault

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
