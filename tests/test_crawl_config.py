"""CrawlConfig parsing, overrides and the seed file reader."""

from __future__ import annotations

import argparse
import logging

import pytest

from thresher.config import ConfigError
from thresher.crawlers.cli import read_seed_file, register
from thresher.crawlers.config import CrawlConfig, crawl_config, load_crawl_config
from thresher.crawlers.scope import Scope, canonical_url, netloc_of


def test_overrides_are_typed_and_validated():
    cfg = crawl_config(
        {"max_depth": 2}, ["max_pages=10", "allowed_domains=[debian.org]", "allow_private=true"]
    )
    assert (cfg.max_depth, cfg.max_pages, cfg.allowed_domains, cfg.allow_private) == (
        2,
        10,
        ["debian.org"],
        True,
    )
    with pytest.raises(ConfigError, match="max_pages: expected an integer"):
        crawl_config({}, ["max_pages=lots"])
    with pytest.raises(ConfigError, match="did you mean 'max_depth'"):
        crawl_config({}, ["max_dept=3"])
    with pytest.raises(ConfigError, match="deny_patterns\\[0\\]: invalid regex"):
        crawl_config({"deny_patterns": ["("]})
    with pytest.raises(ConfigError, match="seeds\\[0\\]: not an http"):
        crawl_config({"seeds": ["ftp://x"]})


def test_yaml_crawl_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("crawl:\n  max_depth: 1\n  contact_url: https://example.org/bot\n")
    cfg = load_crawl_config(path, ["user_agent=AcmeBot/2.0"])
    assert cfg.max_depth == 1
    assert cfg.full_user_agent == "AcmeBot/2.0 (+https://example.org/bot)"
    assert cfg.robots_token == "AcmeBot"


def test_seed_file_skips_bad_lines(tmp_path, caplog):
    path = tmp_path / "seeds.txt"
    path.write_text("# comment\nhttps://a.example/\n\nnot a url\nhttp://b.example:8080/x?y=1\nftp://c/\n")
    with caplog.at_level(logging.WARNING):
        assert read_seed_file(path) == ["https://a.example/", "http://b.example:8080/x?y=1"]
    assert "2 malformed seed lines skipped" in caplog.text


def test_cli_arguments():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "crawl",
            "https://a.example/",
            "--output",
            "o",
            "--max-pages",
            "5",
            "--partitions",
            "3",
            "--set",
            "max_depth=1",
            "--set",
            "timeout=5",
        ]
    )
    assert args.urls == ["https://a.example/"] and args.max_pages == 5 and args.partitions == 3
    assert args.overrides == ["max_depth=1", "timeout=5"]


def test_scope_rules():
    cfg = CrawlConfig(max_depth=2, deny_patterns=[r"/private/"], allow_patterns=[r"/docs/"])
    scope = Scope(cfg, ["https://site.example/docs/"])
    assert scope.why_not("https://site.example/docs/a.html", 1) is None
    assert scope.why_not("https://site.example/docs/a.html", 3) == "max_depth"
    assert scope.why_not("https://other.example/docs/", 1) == "offsite"
    assert scope.why_not("https://site.example/docs/x.PDF", 1) == "extension"
    assert scope.why_not("https://site.example/docs/private/a", 1) == "deny_pattern"
    assert scope.why_not("https://site.example/blog/", 1) == "allow_pattern"
    assert scope.why_not("mailto:a@b", 1) == "scheme"
    domains = Scope(CrawlConfig(allowed_domains=["example.org"]), [])
    assert domains.host_allowed("https://www.example.org/") and not domains.host_allowed(
        "https://badexample.org/"
    )


def test_canonical_form():
    assert canonical_url("HTTP://Site.Example/a?b=2&a=1#frag") == canonical_url(
        "http://site.example/a?a=1&b=2"
    )
    assert netloc_of("https://Site.Example:443/x") == "site.example"
    assert netloc_of("http://site.example:8080/x") == "site.example:8080"
