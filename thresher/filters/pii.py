"""PII: e-mail addresses and public IP addresses are replaced by harmless stand-ins, as FineWeb did.

Private, loopback and reserved addresses (192.168.x.x, 127.0.0.1, 10.x.x.x...) identify nobody
and are common in technical text, so they stay. Replacements are FineWeb's: two example.com/.org
addresses and six IPv4 addresses that answered no ping when FineWeb chose them. Which stand-in
replaces a value is a function of the value (not of the order documents arrive in), so a run
gives the same output on any number of workers.
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass, field

from thresher.document import Document
from thresher.stage import Stage

# RFC 5322 "atext" for the local part (dot-separated atoms), RFC 1035 labels for the host, or an
# address literal in brackets.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
_EMAIL = re.compile(
    rf"\b{_ATEXT}+(?:\.{_ATEXT}+)*@(?:(?:{_LABEL}\.)+{_LABEL}"
    rf"|\[(?:{_OCTET}\.){{3}}(?:{_OCTET}|[A-Za-z0-9-]*[A-Za-z0-9]:)\])"
)
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")

EMAIL_STAND_INS = ["email@example.com", "firstname.lastname@example.org"]
IP_STAND_INS = [
    "22.214.171.124",
    "126.96.36.199",
    "188.8.131.52",
    "184.108.40.206",
    "220.127.116.11",
    "18.104.22.168",
]


def is_public_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_global
    except ValueError:
        return False


def _stand_in(value: str, choices: list[str]) -> str:
    return choices[zlib.crc32(value.encode("utf-8", "surrogatepass")) % len(choices)]


@dataclass
class PIIConfig:
    emails: bool = True
    ips: bool = True
    public_ips_only: bool = True
    """Leave private, loopback and reserved addresses alone."""
    email_replacements: list[str] = field(default_factory=lambda: list(EMAIL_STAND_INS))
    ip_replacements: list[str] = field(default_factory=lambda: list(IP_STAND_INS))

    def validate(self, where: str) -> None:
        if not self.email_replacements or not self.ip_replacements:
            raise ValueError(f"{where}: email_replacements and ip_replacements need at least one value")


class PIIFormatter(Stage):
    """Rewrites text, never drops. ``scores``: ``pii_emails`` and ``pii_ips`` (replacements made)."""

    name = "pii"
    Config = PIIConfig

    def replace(self, text: str) -> tuple[str, int, int]:
        """(text with PII replaced, e-mails replaced, IPs replaced)."""
        cfg: PIIConfig = self.config
        n_emails = n_ips = 0
        if cfg.emails and "@" in text:

            def email(m: re.Match) -> str:
                nonlocal n_emails
                n_emails += 1
                return _stand_in(m.group(), cfg.email_replacements)

            text = _EMAIL.sub(email, text)
        if cfg.ips and "." in text:

            def ip(m: re.Match) -> str:
                nonlocal n_ips
                value = m.group()
                if cfg.public_ips_only and not is_public_ip(value):
                    return value
                n_ips += 1
                return _stand_in(value, cfg.ip_replacements)

            text = _IPV4.sub(ip, text)
        return text, n_emails, n_ips

    def process(self, doc: Document) -> Document:
        doc.text, n_emails, n_ips = self.replace(doc.text)
        if n_emails:
            doc.scores["pii_emails"] = n_emails
        if n_ips:
            doc.scores["pii_ips"] = n_ips
        return doc
