"""Crawl configuration: one typed dataclass, loadable from YAML or ``--set key=value`` overrides.

Defaults are chosen for the real web: obey robots.txt, one connection per host, AutoThrottle on,
HTML only, private networks refused, a page cap per host and a bound on the requests queued
(on disk; a link trap cannot grow the frontier without end). Tests and demos loosen them explicitly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thresher.config import ConfigError, apply_overrides, from_dict, read_yaml
from thresher.crawlers.optout import DEFAULT_AI_TOKENS, validate_signals
from thresher.crawlers.optout import SIGNALS as OPTOUT_SIGNALS
from thresher.io import StorageConfig

# Extensions that are never HTML; links ending in them are not requested at all.
DEFAULT_DENY_EXTENSIONS = sorted(
    """7z apk avi bin bmp bz2 css csv dmg doc docx eot epub exe flac flv gif gz ico iso jar jpeg jpg js
    json m4a m4v mkv mov mp3 mp4 mpeg mpg msi odp ods odt ogg otf pdf png ppt pptx ps rar rpm svg swf
    tar tgz tif tiff ttf txt wav webm webp wma wmv woff woff2 xls xlsx xml xz zip zst""".split()
)

MAX_CONCURRENT_PER_IP = 1024
MAX_IP_DELAY = 60.0
MIN_DNS_TTL = 0.01  # a test's; on the web, seconds to hours
MAX_DNS_TTL = 7 * 24 * 3600.0


@dataclass
class CrawlConfig:
    seeds: list[str] = field(default_factory=list)
    """Start URLs (the CLI adds those from ``--seeds``)."""

    # ---- identity
    user_agent: str = "ThresherBot/0.1"
    """Product token first: robots.txt groups are matched against the part before the ``/``."""
    contact_url: str | None = None
    """Appended to the User-Agent as ``(+URL)`` so site owners can reach the operator."""

    # ---- scope
    same_host: bool = True
    """Follow links only to the hosts of the seeds (host:port)."""
    allowed_domains: list[str] = field(default_factory=list)
    """If set, follow links to these domains and their subdomains (overrides ``same_host``)."""
    allow_patterns: list[str] = field(default_factory=list)
    """Regexes; when set, a URL must match one of them (seeds are exempt)."""
    deny_patterns: list[str] = field(default_factory=list)
    """Regexes; a URL matching any of them is never requested."""
    max_depth: int = 5
    """Link hops from a seed (seeds are depth 0); 0 means fetch the seeds only."""
    max_pages: int = 0
    """Stop after storing this many pages in total (0: no limit); counts earlier runs of the job."""
    max_pages_per_host: int = 10_000
    """Pages per host (host:port) stored, counting earlier runs of the job; links to a host whose
    stored plus queued pages reach it are not queued (counted as ``overflow.host_cap``).
    0: no limit. 10,000 because a site with more pages than that is either a large site worth
    raising it for, or a crawler trap (calendars, faceted search, session ids in URLs) that
    would otherwise take the whole crawl; for pretraining data more hosts beat more pages of
    one host, and at a polite ~1 request/s per host 10,000 pages are already ~3 hours."""
    deny_extensions: list[str] = field(default_factory=lambda: list(DEFAULT_DENY_EXTENSIONS))
    content_types: list[str] = field(default_factory=lambda: ["text/html", "application/xhtml+xml"])
    """Media types stored; other responses are cut off once their headers arrive."""
    max_queued_requests: int = 10_000_000
    """Page requests a partition may hold (queued, downloading or being parsed). Queued ones
    wait on disk in the job's state directory (~130 bytes each) and cost ~20-30 bytes of RAM
    (seen-set key and queue word), so the default is ~300 MB of RAM and ~1.3 GB of disk at
    most. Links found while it is full are not queued (counted as ``overflow.frontier_full``);
    a link met again once the queue has drained is queued then. 0: no limit."""
    sitemaps: bool = True
    """Read the sitemaps named by robots.txt ``Sitemap:`` lines for more URLs, on the seeds'
    hosts (see ``sitemaps_all_hosts`` and ``guess_sitemap``)."""
    guess_sitemap: bool = False
    """Also request /sitemap.xml on hosts whose robots.txt names no sitemap (or on the seeds'
    hosts when ``obey_robots`` is off). Off by default: on most hosts the guess is a 404 that
    costs a request per host (at 300 hosts, default politeness, 114 pages/s with it, 160 without)."""
    sitemaps_all_hosts: bool = False
    """Also read the sitemaps of hosts reached by links: one or two more requests per host, a
    third of all requests on a broad crawl, for URLs that links mostly lead to anyway."""
    max_sitemap_urls: int = 50_000
    """Per sitemap file; bounds memory on giant sitemaps."""

    # ---- politeness
    obey_robots: bool = True
    """RFC 9309: robots.txt answering 4xx allows everything; 5xx, 429 or no answer at all (after
    ``retries``) disallows the whole host, counted as ``robots_unavailable``."""
    robots_retry_delay: float = 600.0
    """Seconds before an unreachable robots.txt is fetched again (on the next request for its
    host); the RFC names no interval. Pages refused meanwhile are fetched by a rerun of the job."""
    concurrent_requests: int = 16
    """Downloads in progress at once per partition (process). Requests waiting for their host's
    delay do not count (two per host with a download slot may wait, up to 4,096), so many
    polite hosts are crawled at once."""
    concurrent_per_host: int = 1
    """Connections to one host (host:port) at once."""
    download_delay: float = 0.0
    """Minimum seconds between requests to one host; robots.txt ``Crawl-delay`` raises it per host."""
    concurrent_per_ip: int = 8
    """Transfers at once to one server address, whatever its hosts' slots allow: thousands of
    sites can share one IP (shared hosting), and each would otherwise get its own connection.
    A loopback address counts per port (``allow_private`` crawls of local test servers).
    0: no per-address limit (e.g. a crawl of hosts behind one CDN address, with its consent)."""
    ip_delay: float = 0.0
    """Minimum seconds between the starts of two transfers to one server address (0: only
    ``concurrent_per_ip`` applies), on top of each host's own delay."""
    dns_cache_ttl: float = 900.0
    """Seconds a resolved address is used before the name is resolved again (the system
    resolver does not tell the record's TTL); a site that moves is followed within this."""
    autothrottle: bool = True
    autothrottle_start_delay: float = 1.0
    autothrottle_max_delay: float = 30.0
    autothrottle_target_concurrency: float = 1.0

    # ---- opt-out signals for AI training (optout.py)
    ai_tokens: list[str] = field(default_factory=lambda: list(DEFAULT_AI_TOKENS))
    """AI-crawler tokens whose robots.txt groups are read besides our own (GPTBot, CCBot,
    Google-Extended, anthropic-ai, ClaudeBot, Applebot-Extended, cohere-ai, Bytespider,
    PerplexityBot, meta-externalagent...): a group naming one of them that disallows a path is
    treated as the site disallowing AI training use of that path, by us too."""
    optout_signals: list[str] = field(default_factory=lambda: list(OPTOUT_SIGNALS))
    """The signals honoured (all by default): ``robots_ai``, ``tdmrep_json`` (the host's
    /.well-known/tdmrep.json is fetched only when listed), ``tdm_header``, ``tdm_meta``
    (``tdm-reservation: 1``), ``noai``, ``noimageai``, ``noindex`` (X-Robots-Tag and
    ``<meta name="robots">``). A page carrying one is not archived, counted under ``optout``;
    one known before the request (robots_ai, tdmrep_json) is not requested at all."""
    archive_opted_out: bool = False
    """Archive such pages anyway, their signals in the WARC field ``WARC-Thresher-Optout`` (the
    pipeline's ``optout`` stage drops them), e.g. for research use that no reservation covers;
    counted under ``optout_flagged``."""

    # ---- recrawl (recrawl.py)
    recrawl: bool = False
    """Fetch the job's known pages again with If-None-Match/If-Modified-Since; unchanged ones
    (304, or the same payload digest) are written as WARC revisit records."""

    # ---- network and limits
    timeout: float = 30.0
    """Seconds for one download (connect + headers + body)."""
    dns_timeout: float = 10.0
    retries: int = 2
    """Extra attempts on timeouts, connection errors and 5xx/429, with exponential backoff."""
    retry_backoff_base: float = 1.0
    max_redirects: int = 5
    max_page_bytes: int = 10 * 1024 * 1024
    """Cap on the bytes received and, separately, on the decompressed size (gzip bombs)."""
    accept_encoding: str = "gzip, deflate"
    """Sent as Accept-Encoding. The WARC keeps the payload as sent, content coding included."""
    allow_private: bool = False
    """Allow loopback, private, multicast and reserved addresses (tests, intranets), IPv4 ones
    embedded in IPv6 (6to4, NAT64...) included, but not link-local ones (169.254.0.0/16,
    fe80::/10: cloud metadata services), which only ``allow_networks`` or a named host allow."""
    allow_private_hosts: list[str] = field(default_factory=list)
    """Hosts (``host`` or ``host:port``) allowed on any address; all others are checked."""
    allow_networks: list[str] = field(default_factory=list)
    """Networks (CIDR, e.g. ``169.254.0.0/16``) whose addresses are allowed, link-local ones too."""

    # ---- output
    warc_prefix: str = "thresher"
    warc_max_bytes: int = 1024 * 1024 * 1024
    """Roll to a new WARC file once the current one (compressed) reaches this size."""
    warc_gzip_level: int = 1
    """zlib level of each record's gzip member (1-9). 1 is about twice as fast as 6, for 11-13%
    more bytes (measured on ~25 KB pages: 0.27 against 0.58 ms per page on the bench's synthetic
    pages, 0.13 against 0.27 ms on the demo site's)."""
    store_redirects: bool = True
    """Also archive 3xx responses (their targets are followed and archived separately)."""

    # ---- execution
    partitions: int = 1
    """Crawl processes, run at once, each owning a share of the hosts (by hash of host:port) and
    handing links to the others' hosts to their owner; Ray tasks when a cluster is named."""
    log_level: str = "INFO"
    log_interval: float = 30.0
    """Seconds between progress lines from each partition."""

    def validate(self, where: str) -> None:
        where = where or "crawl"
        for name in (
            "max_depth",
            "max_pages",
            "max_pages_per_host",
            "max_queued_requests",
            "retries",
            "max_redirects",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}.{name}: must be >= 0")
        for name in ("concurrent_requests", "concurrent_per_host", "partitions", "max_page_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be >= 1")
        if self.timeout <= 0 or self.dns_timeout <= 0:
            raise ConfigError(f"{where}.timeout: must be > 0")
        if self.robots_retry_delay <= 0:
            raise ConfigError(f"{where}.robots_retry_delay: must be > 0")
        if self.download_delay < 0:
            raise ConfigError(f"{where}.download_delay: must be >= 0")
        if not 0 <= self.concurrent_per_ip <= MAX_CONCURRENT_PER_IP:
            raise ConfigError(f"{where}.concurrent_per_ip: must be 0 (no limit) to {MAX_CONCURRENT_PER_IP}")
        if not 0 <= self.ip_delay <= MAX_IP_DELAY:
            raise ConfigError(f"{where}.ip_delay: must be 0 to {MAX_IP_DELAY:g} seconds")
        if not MIN_DNS_TTL <= self.dns_cache_ttl <= MAX_DNS_TTL:
            raise ConfigError(f"{where}.dns_cache_ttl: must be {MIN_DNS_TTL:g} to {MAX_DNS_TTL:g} seconds")
        if self.warc_max_bytes < 1024:
            raise ConfigError(f"{where}.warc_max_bytes: must be >= 1024")
        if not 1 <= self.warc_gzip_level <= 9:
            raise ConfigError(f"{where}.warc_gzip_level: must be 1 to 9")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.warc_prefix):
            raise ConfigError(f"{where}.warc_prefix: letters, digits, '_', '.', '-' only")
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", self.user_agent.split("/")[0]):
            raise ConfigError(f"{where}.user_agent: must start with a product token, e.g. MyBot/1.0")
        for name in ("allow_patterns", "deny_patterns"):
            for i, pattern in enumerate(getattr(self, name)):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(f"{where}.{name}[{i}]: invalid regex {pattern!r}: {exc}") from exc
        for i, net in enumerate(self.allow_networks):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ConfigError(f"{where}.allow_networks[{i}]: not a network: {net!r} ({exc})") from exc
        try:
            validate_signals(self.optout_signals, f"{where}.optout_signals")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for i, token in enumerate(self.ai_tokens):
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", token):
                raise ConfigError(f"{where}.ai_tokens[{i}]: not a user-agent product token: {token!r}")
        for i, seed in enumerate(self.seeds):
            if not re.match(r"https?://[^/]+", seed):
                raise ConfigError(f"{where}.seeds[{i}]: not an http(s) URL: {seed!r}")

    @property
    def full_user_agent(self) -> str:
        return f"{self.user_agent} (+{self.contact_url})" if self.contact_url else self.user_agent

    @property
    def robots_token(self) -> str:
        return self.user_agent.split("/")[0]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def crawl_config(
    data: dict[str, Any] | None = None, overrides: list[str] | None = None, where: str = "crawl"
) -> CrawlConfig:
    """Build a validated CrawlConfig from a mapping plus ``key=value`` overrides."""
    merged = apply_overrides(dict(data or {}), overrides or [])
    return from_dict(CrawlConfig, merged, where)


def load_storage_config(path: str | Path | None) -> StorageConfig:
    """The ``storage:`` section (retries, timeouts, concurrency of an ``s3://`` output) of a
    config file with a ``crawl:`` section; the defaults otherwise."""
    data = read_yaml(path, "crawl config") if path is not None else None
    if isinstance(data, dict) and isinstance(data.get("crawl"), dict):
        return from_dict(StorageConfig, data.get("storage"), "storage")
    return StorageConfig()


def load_crawl_config(path: str | Path | None, overrides: list[str] | None = None) -> CrawlConfig:
    """Read a YAML file (its top level, or its ``crawl:`` section) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(path, "crawl config")
        if isinstance(data, dict) and isinstance(data.get("crawl"), dict):
            data = data["crawl"]
    return crawl_config(data, overrides)
