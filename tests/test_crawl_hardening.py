"""Hardening of the crawler against an adversarial web (issue #20, items 11–13).

* addresses that embed a private IPv4 address (6to4, Teredo, NAT64, IPv4-mapped) or are
  site-local are refused; ``allow_private`` still refuses link-local (cloud metadata);
* robots.txt answering 5xx (or not at all) means "disallow everything" (RFC 9309 §2.3.1.4),
  4xx means "allow everything" (§2.3.1.3);
* a link trap (every page links to 50 new pages) cannot grow the frontier without bound.

Every crawl here runs against real HTTP servers on 127.0.0.1 and reads their access logs.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.localsite import LocalSite
from thresher.crawlers.netsafety import AddressPolicy, address_refusal, is_public_address
from thresher.crawlers.runner import crawl

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-site"


# ---------------------------------------------------------------- item 13: address classes


@pytest.mark.parametrize(
    "address,public",
    [
        # public, must stay public
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("93.184.215.14", True),
        ("2001:4860:4860::8888", True),
        ("2606:4700:4700::1111", True),
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("::ffff:8.8.8.8", True),
        ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", True),  # Teredo: server 65.54.227.120, client 8.8.8.8
        # from the issue
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("2002:a9fe:a9fe::", False),  # 6to4 of 169.254.169.254 (cloud metadata)
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", False),  # Teredo, client 10.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo, client 192.0.2.45 (documentation)
        ("2001:0:a00:1::1", False),  # Teredo, server 10.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b:1::808:808", False),  # NAT64 local-use prefix: the operator's own network
        ("fec0::1", False),  # site-local
        ("feff::1", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        # the ordinary non-public ranges
        ("127.0.0.1", False),
        ("127.255.255.254", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("172.31.255.255", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("100.127.255.255", False),
        ("192.0.0.8", False),  # IETF protocol assignments
        ("192.0.2.1", False),  # documentation
        ("198.18.0.1", False),  # benchmarking
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("0.0.0.0", False),
        ("::", False),
        ("::1", False),
        ("::a00:1", False),  # IPv4-compatible (deprecated)
        ("fe80::1", False),
        ("fd00::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("2001:db8::1", False),
        ("3fff::1", False),  # documentation (RFC 9637)
        ("100::1", False),  # discard-only
    ],
)
def test_public_address_classification(address, public):
    assert is_public_address(address) is public, address_refusal(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address,allowed",
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("192.168.0.10", True),
        ("fd00::1", True),
        ("2002:a00:1::", True),  # 6to4 of a private address: private, allowed
        ("169.254.169.254", False),
        ("169.254.0.1", False),
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),
        ("2002:a9fe:a9fe::", False),
        ("64:ff9b::a9fe:a9fe", False),
    ],
)
def test_allow_private_still_refuses_link_local(address, allowed):
    policy = AddressPolicy(allow_private=True, allow_hosts=[])
    refusal = policy.refusal("http://example.test/", ipaddress.ip_address(address))
    assert (refusal is None) is allowed, refusal


def test_link_local_allowed_when_named():
    ip = ipaddress.ip_address("169.254.169.254")
    url = "http://169.254.169.254/latest/"
    assert AddressPolicy(True, [], networks=["169.254.0.0/16"]).refusal(url, ip) is None
    assert AddressPolicy(False, [], networks=["169.254.169.254/32"]).refusal(url, ip) is None
    assert AddressPolicy(True, ["169.254.169.254"]).refusal(url, ip) is None
    assert AddressPolicy(True, [], networks=["10.0.0.0/8"]).refusal(url, ip) is not None


def test_demo_mode_refuses_metadata_address_and_logs_it(tmp_path, capfd):
    """``--allow-private`` crawls 127.0.0.1 but not a link-local (metadata) address, and the
    refused URL is named in the (partition process's) log at DEBUG with the reason."""
    with LocalSite(DEMO) as site:
        config = CrawlConfig(
            seeds=[site.url("/faq/index.en.html"), "http://169.254.169.254/latest/meta-data/"],
            allow_private=True,
            max_depth=0,
            autothrottle=False,
            timeout=2,
            retries=0,
            log_level="DEBUG",
        )
        summary = crawl(config, tmp_path)
    assert summary["pages"] == 1
    assert summary["blocked_address"] == 1
    log = capfd.readouterr().err
    assert "http://169.254.169.254/latest/meta-data/" in log and "link-local" in log
