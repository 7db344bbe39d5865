"""A request's client address, for the limits counted per address (``TOKEN_RATE_LIMIT`` of anonymous visitors).

The same rule as the gateway's ``http.trusted_proxies`` / ``http.client_ip_header`` (proto/PROTOCOL.md
section 3, "Connection quotas"): the address is ``REMOTE_ADDR`` (the TCP peer), unless that peer is one of
``TRUSTED_PROXIES`` (IPs or CIDRs) and ``CLIENT_IP_HEADER`` is set; then the header names the client. In
``X-Forwarded-For`` each proxy appends the address it received the request from, so only the right-most
entries were written by trusted proxies: the client is the right-most address that is not itself a trusted
proxy (anything left of it may be forged by the client). ``X-Real-IP`` holds one address. A header that is
missing or unparsable leaves the peer address.

:func:`rate_key` is what the limits count: an IPv4 address, or the /64 prefix of an IPv6 address (one host
usually holds a whole /64), like the gateway's per-IP quota.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any, Iterable, Union

from .conf import telegraphy_settings

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# The right-most characters of the header read: the entries trusted proxies appended are at its end, and a
# client may pad the left with anything.
MAX_HEADER_CHARS = 4096


def _canonical(ip: Address) -> Address:
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:1.2.3.4 is 1.2.3.4
    return mapped if mapped is not None else ip


def parse_address(text: str) -> Address | None:
    """An address as a peer or a forwarding hop gives it: ``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]``,
    ``[::1]:80``; None when it is none of those."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return _canonical(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_trusted(values: Any) -> tuple[Network, ...]:
    """``TRUSTED_PROXIES``: a list of IPs or CIDRs (``"10.0.0.0/8"``, ``"::1"``). Raises ``ValueError`` naming
    the first bad entry."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ValueError(f"must be a list of IP addresses or CIDRs, got {values!r}")
    networks = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not an IP address or CIDR")
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or CIDR") from None
        networks.append(network)
    return tuple(networks)


def check_header(value: Any) -> str:
    """``CLIENT_IP_HEADER``: None or "" (off) or a header name; returns it ("" when off). Raises ``ValueError``."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value.strip()):
        raise ValueError(f"must be None or a header name such as X-Forwarded-For or X-Real-IP, got {value!r}")
    return value.strip()


@lru_cache(maxsize=8)
def _config(trusted: tuple, header: Any) -> tuple[tuple[Network, ...], str]:
    return parse_trusted(list(trusted)), check_header(header)


def _settings() -> tuple[tuple[Network, ...], str]:
    trusted = telegraphy_settings.TRUSTED_PROXIES
    try:
        trusted = tuple(trusted) if isinstance(trusted, (list, tuple)) else trusted  # hashable for the cache
        return _config(trusted, telegraphy_settings.CLIENT_IP_HEADER)
    except (ValueError, TypeError) as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f'TELEGRAPHY["TRUSTED_PROXIES"] or ["CLIENT_IP_HEADER"]: {exc} '
                                   "(see the telegraphy.E018 check)") from None


def _is_trusted(ip: Address, trusted: Iterable[Network]) -> bool:
    return any(ip.version == network.version and ip in network for network in trusted)


def client_ip(meta: dict) -> str:
    """The client address of a request (its ``request.META``), as text; ``REMOTE_ADDR`` as it is when that is
    not an address."""
    remote = meta.get("REMOTE_ADDR", "") or ""
    peer = parse_address(remote)
    if peer is None:
        return remote
    trusted, header = _settings()
    if not header or not _is_trusted(peer, trusted):
        return str(peer)
    raw = meta.get("HTTP_" + header.upper().replace("-", "_"), "")
    hops = [ip for ip in (parse_address(hop) for hop in str(raw)[-MAX_HEADER_CHARS:].split(",")) if ip is not None]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return str(hop)
    return str(hops[0]) if hops else str(peer)  # every hop a trusted proxy: the left-most, as the gateway does


def rate_key(address: str) -> str:
    """What a per-address limit counts for ``address``: IPv4 as is, IPv6 by its /64 prefix."""
    ip = parse_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return address
