"""Webhooks, the parts that need no network: the signature a delivery carries and how a receiver checks
it, and which URLs a thread may be given. (The sender is in the outbox.)

A delivery carries ``Runner-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256(secret, ``"<t>." + body``), as Stripe signs its webhooks: a receiver recomputes it, compares
in constant time, and refuses a timestamp more than :data:`TOLERANCE_SECONDS` away from its clock, so a
captured delivery cannot be replayed later. Several ``v1=`` entries may appear while a secret is rotated.

A webhook URL is ``https`` to a host name within the operator's patterns (``RUNNER_WEBHOOK_ALLOW``,
default any public name); never an address in a special-purpose range (private, loopback, link-local,
metadata...) unless the operator lists it (``RUNNER_WEBHOOK_ALLOW_ADDRESSES``), and a listed address may
be plain ``http`` (a receiver on the same host or network). The names are checked again when each
delivery resolves them (:meth:`UrlPolicy.address_allowed`), so a name that later points at a private
address is refused then.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from . import egress
from .errors import ValidationError

TOLERANCE_SECONDS = 300
MAX_URL = 2048
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_NAME_RE = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")
_V1 = re.compile(r"[0-9a-f]{64}")


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Runner-Signature`` header value for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_mac(secret, body, t)}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None,
           tolerance: float = TOLERANCE_SECONDS) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, within ``tolerance`` seconds of ``now``."""
    fields = [part.partition("=") for part in header.split(",")]
    stamps = [v for k, _, v in fields if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    want = _mac(secret, body, t)
    return any(hmac.compare_digest(want, v) for k, _, v in fields if k == "v1" and _V1.fullmatch(v))


@dataclass(frozen=True)
class UrlPolicy:
    """The operator's rule for webhook URLs: host-name patterns, and special addresses allowed back."""

    allow: Sequence[str]
    allow_addresses: Sequence[str]

    @cached_property
    def _listed(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(a, strict=False) for a in self.allow_addresses]

    @cached_property
    def _special(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n) for n in egress.SPECIAL_NETS]

    def address_allowed(self, address: str) -> bool:
        """Whether a delivery may connect to ``address`` (a resolved or literal IP)."""
        ip = ipaddress.ip_address(address)
        if any(ip in net for net in self._listed):
            return True
        return not any(ip in net for net in self._special)

    def check(self, url: str) -> str:
        """``url``, normalised, if a thread may deliver to it; else ValidationError saying why."""
        if not isinstance(url, str) or len(url) > MAX_URL:
            raise ValidationError(f"a webhook URL must be text of at most {MAX_URL} characters (it is too long)")
        if _CONTROL.search(url):
            raise ValidationError("a webhook URL may not contain spaces or control characters")
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "")
        if parts.username is not None or parts.password is not None:
            raise ValidationError("a webhook URL may not carry credentials (user:password@): the signature "
                                  "authenticates the runner to the receiver")
        if scheme not in ("https", "http"):
            raise ValidationError(f"webhook URL {url!r}: use https://")
        if not host:
            raise ValidationError(f"webhook URL {url!r} has no host")
        literal = self._literal(host)
        if literal is not None:
            return self._check_address(url, scheme, literal, parts.geturl())
        return self._check_name(url, scheme, host, parts.geturl())

    @staticmethod
    def _literal(host: str) -> str | None:
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            return None

    def _check_address(self, url: str, scheme: str, address: str, normal: str) -> str:
        if any(ipaddress.ip_address(address) in net for net in self._listed):
            return normal  # the operator's own receiver: http is allowed
        if not self.address_allowed(address):
            raise ValidationError(f"webhook URL {url!r} points at a private or reserved address: only the "
                                  "operator can allow one (RUNNER_WEBHOOK_ALLOW_ADDRESSES)")
        if scheme != "https":
            raise ValidationError(f"webhook URL {url!r}: use https://")
        return normal

    def _check_name(self, url: str, scheme: str, host: str, normal: str) -> str:
        if scheme != "https":
            raise ValidationError(f"webhook URL {url!r}: use https://")
        if not _NAME_RE.fullmatch(host) or len(host) > 253:
            raise ValidationError(f"webhook URL {url!r}: {host!r} is not a public host name")
        if not self.allow:
            raise ValidationError("this runner allows no webhook (RUNNER_WEBHOOK_ALLOW is empty)")
        if not any(egress.covered(host, pattern) for pattern in self.allow):
            raise ValidationError(f"webhook host {host!r} is outside what the operator allows: "
                                  f"{', '.join(self.allow)}")
        return normal
