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
_DEFAULT_PORT = {"https": 443, "http": 80}
_STAMP = re.compile(r"[0-9]{1,12}")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PORTS = frozenset({80, 443})


def parse_allowed_address(entry: str) -> tuple[Network, frozenset[int] | None]:
    """One entry of RUNNER_WEBHOOK_ALLOW_ADDRESSES: an address or network, and the ports it opens.
    ``127.0.0.1:9000`` (``[::1]:9000``) opens that port; ``127.0.0.1:*`` every port; a bare
    ``127.0.0.1`` or ``10.0.0.0/8`` only the web's own ports, 80 and 443, so listing a receiver's
    address never opens the host's other services (its database, SSH, the runner's own API). None
    means every port. ValueError if the entry is none of these."""
    text = entry.strip()
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise ValueError(entry)
        net, port = inside, rest[1:]
    elif text.count(":") == 1:
        net, _, port = text.partition(":")
    else:
        net, port = text, ""
    network = ipaddress.ip_network(net, strict=False)
    if port == "*":
        return network, None
    if not port:
        return network, DEFAULT_PORTS
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(entry)
    return network, frozenset({int(port)})


def format_allowed_address(entry: str) -> str:
    """An entry of RUNNER_WEBHOOK_ALLOW_ADDRESSES in its normal form."""
    network, ports = parse_allowed_address(entry)
    if ports == DEFAULT_PORTS:
        return str(network)
    shown = f"[{network}]" if network.version == 6 else str(network)
    return f"{shown}:{'*' if ports is None else next(iter(ports))}"


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
    if len(stamps) != 1 or not _STAMP.fullmatch(stamps[0]):  # ASCII digits, a plausible length
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
    def _listed(self) -> list[tuple[Network, frozenset[int] | None]]:
        return [parse_allowed_address(a) for a in self.allow_addresses]

    @cached_property
    def _special(self) -> list[Network]:
        return [ipaddress.ip_network(n) for n in egress.SPECIAL_NETS]

    def listed(self, address: str, port: int | None = None) -> bool:
        """Whether the operator lists ``address`` (and ``port``, when given) in RUNNER_WEBHOOK_ALLOW_ADDRESSES."""
        ip = ipaddress.ip_address(address)
        return any(ip in net and (port is None or ports is None or port in ports) for net, ports in self._listed)

    def address_allowed(self, address: str, port: int | None = None) -> bool:
        """Whether a delivery may connect to ``address`` (a resolved or literal IP) on ``port``: a public
        address, or one the operator lists with that port."""
        ip = ipaddress.ip_address(address)
        if any(ip in net for net in self._special):
            return self.listed(address, port)
        return True

    def check(self, url: str) -> str:
        """``url``, normalised, if a thread may deliver to it; else ValidationError saying why."""
        if not isinstance(url, str) or len(url) > MAX_URL:
            raise ValidationError(f"a webhook URL must be text of at most {MAX_URL} characters (it is too long)")
        if _CONTROL.search(url):
            raise ValidationError("a webhook URL may not contain spaces or control characters")
        try:
            parts = urlsplit(url)
            scheme, host, port = parts.scheme.lower(), (parts.hostname or ""), parts.port
        except ValueError:
            raise ValidationError(f"webhook URL {url!r} cannot be read: check its [brackets] and that its "
                                  "port is a number from 1 to 65535") from None
        if port == 0:
            raise ValidationError(f"webhook URL {url!r}: the port must be a number from 1 to 65535")
        if parts.username is not None or parts.password is not None:
            raise ValidationError("a webhook URL may not carry credentials (user:password@): the signature "
                                  "authenticates the runner to the receiver")
        if scheme not in ("https", "http"):
            raise ValidationError(f"webhook URL {url!r}: use https://")
        if not host:
            raise ValidationError(f"webhook URL {url!r} has no host")
        literal = self._literal(host)
        if literal is not None:
            return self._check_address(url, scheme, literal, port or _DEFAULT_PORT[scheme], parts.geturl())
        return self._check_name(url, scheme, host, parts.geturl())

    @staticmethod
    def _literal(host: str) -> str | None:
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            return None

    def _check_address(self, url: str, scheme: str, address: str, port: int, normal: str) -> str:
        """An address literal: one the operator lists (with its port; plain http allowed to it), or a
        public one where the operator allows any host (``*``): patterns of names do not cover addresses."""
        if self.listed(address, port):
            return normal  # the operator's own receiver
        if self.listed(address):
            raise ValidationError(f"webhook URL {url!r}: port {port} of {address} is not open to webhooks; the "
                                  "operator lists the ports (RUNNER_WEBHOOK_ALLOW_ADDRESSES, such as "
                                  f"{address}:9000)")
        if not self.address_allowed(address, port):
            raise ValidationError(f"webhook URL {url!r} points at a private or reserved address: only the "
                                  "operator can allow one (RUNNER_WEBHOOK_ALLOW_ADDRESSES)")
        if "*" not in self.allow:
            raise ValidationError(f"webhook URL {url!r} names an address: this runner allows only host names "
                                  f"matching {', '.join(self.allow) or 'nothing'}")
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
