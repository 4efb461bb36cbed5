"""A seedable synthetic web for crawl benchmarks, served by nginx on 127.0.0.1 (hosts = ports).

    .venv/bin/python bench/synthweb.py DIR --hosts 100 --pages 20 [--seed 1] [--serve]

``generate`` writes H hosts × P pages under DIR/sites/hNNNN/: ``/`` and ``/p/N.html`` of about
25 KB of real text each (paragraphs of the Debian FAQ in examples/demo-site, drawn by a seeded
random generator), ~10 links within the host (the next pages, so every page is reachable, plus
random ones) and ~2 to other hosts, one link per page to ``/private/N.html``, which each host's
robots.txt disallows (a crawler that obeys robots.txt never requests it). ``Nginx`` starts its
own nginx with its own configuration (one ``server`` per port, an access log that records port,
path and status) in DIR and stops it; ``nginx_path`` is None where nginx is not installed.
"""

from __future__ import annotations

import argparse
import html
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo-site"
PAGE_BYTES = 25_000
LINKS_WITHIN = 10
LINKS_ACROSS = 2


def text_pool() -> list[str]:
    """Paragraphs of real prose (the Debian FAQ pages of the demo site), HTML-escaped."""
    paragraphs = []
    for path in sorted(DEMO.glob("faq/**/*.html")):
        raw = path.read_text(encoding="utf-8", errors="replace")
        for block in re.findall(r"<p>(.*?)</p>", raw, flags=re.S | re.I):
            text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", block)).split())
            if len(text) > 80:
                paragraphs.append(html.escape(text))
    if not paragraphs:
        raise RuntimeError(f"no paragraphs found under {DEMO}")
    return paragraphs


def free_port_range(count: int, start: int = 20000) -> int:
    """The first port of ``count`` consecutive ports nobody listens on (checked by binding)."""
    base = start
    while base + count < 65000:
        busy = None
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    busy = port
                    break
        if busy is None:
            return base
        base = busy + 1
    raise RuntimeError(f"no {count} consecutive free ports")


@dataclass
class SyntheticWeb:
    root: Path
    hosts: int
    pages: int
    base_port: int

    def url(self, host: int, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.base_port + host}{path}"

    @property
    def seeds(self) -> list[str]:
        return [self.url(h) for h in range(self.hosts)]

    def host_dir(self, host: int) -> Path:
        return self.root / "sites" / f"h{host:04d}"


def generate(
    root: str | Path, hosts: int, pages: int, seed: int = 1, base_port: int | None = None
) -> SyntheticWeb:
    """Write the web's files; the same (hosts, pages, seed) always gives the same pages."""
    root = Path(root)
    web = SyntheticWeb(root, hosts, pages, base_port or free_port_range(hosts))
    rng = random.Random(seed)
    pool = text_pool()
    for h in range(hosts):
        d = web.host_dir(h)
        (d / "p").mkdir(parents=True, exist_ok=True)
        (d / "private").mkdir(exist_ok=True)
        (d / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n", encoding="ascii")
        for n in range(pages):
            links = [f"/p/{m}.html" for m in range(n + 1, min(n + 4, pages))]
            while len(links) < LINKS_WITHIN and pages > 1:
                links.append(f"/p/{rng.randrange(pages)}.html")
            if hosts > 1:
                for _ in range(LINKS_ACROSS):
                    other = rng.randrange(hosts - 1)
                    other += other >= h
                    links.append(web.url(other, f"/p/{rng.randrange(pages)}.html"))
            links.append(f"/private/{n}.html")
            body = _page(rng, pool, f"Host {h} page {n}", links)
            (d / "p" / f"{n}.html").write_text(body, encoding="utf-8")
            (d / "private" / f"{n}.html").write_text(_page(rng, pool, "private", []), encoding="utf-8")
        shutil.copyfile(d / "p" / "0.html", d / "index.html")
    os.chmod(root, 0o755)  # nginx workers run as an unprivileged user
    return web


def _page(rng: random.Random, pool: list[str], title: str, links: list[str]) -> str:
    parts = [f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title></head><body>"]
    parts.append(f"<h1>{title}</h1>")
    size = 0
    while size < PAGE_BYTES:
        para = pool[rng.randrange(len(pool))]
        parts.append(f"<p>{para}</p>")
        size += len(para) + 7
    parts.append("<ul>" + "".join(f'<li><a href="{u}">{u}</a></li>' for u in links) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def nginx_path() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


class Nginx:
    """nginx serving a SyntheticWeb from its own prefix directory; ``with Nginx(web) as n:``."""

    def __init__(self, web: SyntheticWeb, workers: int = 2):
        self.web = web
        self.workers = workers
        self.prefix = web.root / "nginx"
        self.access_log = self.prefix / "access.log"
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        servers = "\n".join(
            f"server {{ listen 127.0.0.1:{self.web.base_port + h}; root {self.web.host_dir(h)}; }}"
            for h in range(self.web.hosts)
        )
        p = self.prefix
        user = "user root;\n" if os.geteuid() == 0 else ""
        return f"""{user}worker_processes {self.workers};
worker_rlimit_nofile 16384;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  types {{ text/html html; text/plain txt; }}
  default_type application/octet-stream;
  log_format bench '$server_port $status $request_uri';
  access_log {self.access_log} bench;
  client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fcgi;
  uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;
  keepalive_requests 100000;
  sendfile on;
{servers}
}}
"""

    def start(self) -> Nginx:
        binary = nginx_path()
        if binary is None:
            raise FileNotFoundError("nginx is not installed")
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.config(), encoding="utf-8")
        self.proc = subprocess.Popen(
            [binary, "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        last = self.web.base_port + self.web.hosts - 1
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"nginx exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}"
                )
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", last)) == 0:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("nginx did not start listening within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_size(self) -> int:
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def hits(self, since: int = 0) -> list[tuple[int, int, str]]:
        """(port, status, path) for each request logged after byte offset ``since``."""
        out = []
        with open(self.access_log, "rb") as fh:
            fh.seek(since)
            for line in fh:
                parts = line.decode("latin-1").split(" ", 2)
                if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
                    out.append((int(parts[0]), int(parts[1]), parts[2].rstrip("\n")))
        return out

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--pages", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--serve", action="store_true", help="serve it with nginx until Ctrl-C")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    web = generate(args.dir, args.hosts, args.pages, args.seed)
    logger.info(
        "%d hosts x %d pages in %s, ports %d-%d",
        web.hosts,
        web.pages,
        web.root,
        web.base_port,
        web.base_port + web.hosts - 1,
    )
    if args.serve:
        with Nginx(web):
            logger.info("serving; Ctrl-C stops")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
