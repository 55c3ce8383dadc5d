"""Outbound HTTP egress policy for user-supplied URLs (webhooks): no SSRF.

Consumes: a URL a user configured and the policy knobs (``allow_local``: also accept ``http`` and loopback
receivers, for `tasktide dev` and tests only). Emits: either a :class:`Target` (the URL plus the one checked
IP address to connect to) or an :class:`EgressRefused` saying why not; :func:`post` sends one request to
that pinned address (the original host name stays in ``Host`` and TLS SNI/certificate checks), never follows
redirects, and bounds the time and the bytes it reads.

Refused: any scheme but ``https`` (``http`` only with ``allow_local``), credentials in the URL, and every
address that is not globally routable unicast -- loopback, private, link-local (cloud metadata
169.254.169.254), shared, multicast, reserved, unspecified, documentation, IPv4-mapped/compatible, 6to4 and
Teredo IPv6 forms of those -- in every spelling the resolver accepts (decimal ``2852039166``, octal
``0251.0376.0251.0376``, hex ``0xa9fea9fe``, short ``127.1``, ``[::1]``, ``[::ffff:127.0.0.1]``), because
the check runs on what :func:`socket.getaddrinfo` resolves, and the request then goes to exactly that address.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

MAX_RESPONSE_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 10.0


class EgressRefused(ValueError):
    """The URL may not be called; the message says why (never includes credentials or the path)."""


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``address`` and speak to ``host`` (Host header, SNI)."""

    scheme: str
    host: str
    port: int
    address: str
    path: str  # path + query, as given

    @property
    def origin(self) -> str:
        """``scheme://host:port``: what logs may show of the URL."""
        return f"{self.scheme}://{_bracket(self.host)}:{self.port}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 form embeds (mapped, compatible, NAT64, 6to4, Teredo), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
        packed = address.packed
        if packed[:12] == bytes(12) and int(address) > 1:
            return ipaddress.IPv4Address(packed[12:])  # deprecated IPv4-compatible ::a.b.c.d
        if address in ipaddress.IPv6Network("64:ff9b::/96"):
            return ipaddress.IPv4Address(packed[12:])
    return address


def address_refusal(text: str, *, allow_loopback: bool = False) -> str | None:
    """Why ``text`` (an IP address) may not be called, or ``None`` if it is a public unicast address."""
    try:
        address: IPAddress = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return "it is not an IP address"
    inner = _unwrap(address)
    for candidate in {address, inner}:
        if candidate.is_loopback:
            if allow_loopback:
                continue
            return "it is a loopback address"
        if candidate.is_unspecified:
            return "it is the unspecified address"
        if candidate.is_multicast:
            return "it is a multicast address"
        if candidate.is_link_local:
            return "it is a link-local address (e.g. cloud metadata)"
        if candidate.is_reserved:
            return "it is a reserved address"
        if candidate.is_private or not candidate.is_global:
            return "it is a private or non-routable address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (numeric spellings included)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def _parse(url: str, allow_local: bool) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"the URL is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_local else ("https",)
    if scheme not in allowed:
        raise EgressRefused(f"only {' or '.join(allowed)} URLs are allowed, not {scheme or 'no scheme'!r}")
    if parts.username is not None or parts.password is not None:
        raise EgressRefused("the URL must not carry credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise EgressRefused("the URL has no host")
    if not allow_local and (host == "localhost" or host.endswith(".localhost")):
        raise EgressRefused("localhost is not allowed")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, host, port or (443 if scheme == "https" else 80), path


def _refuse_addresses(host: str, addresses: list[str], allow_local: bool) -> None:
    for address in addresses:  # every answer must pass: a mixed answer is a rebinding attempt
        reason = address_refusal(address, allow_loopback=allow_local)
        if reason is not None:
            raise EgressRefused(f"the host {host!r} resolves to {address}, and {reason}")


def check_url(url: str, *, allow_local: bool = False, resolver: Resolver | None = None) -> Target:
    """Check ``url`` against the policy and resolve it to one pinned address (see the module docstring)."""
    scheme, host, port, path = _parse(url, allow_local)
    try:
        addresses = (resolver or system_resolver)(host, port)
    except (OSError, UnicodeError) as exc:
        raise EgressRefused(f"the host {host!r} does not resolve ({exc.__class__.__name__})") from None
    if not addresses:
        raise EgressRefused(f"the host {host!r} does not resolve")
    _refuse_addresses(host, addresses, allow_local)
    return Target(scheme, host, port, addresses[0], path)


def check_literal(url: str, *, allow_local: bool = False) -> None:
    """The checks that need no DNS (scheme, credentials, localhost, IP-literal hosts in any spelling the
    resolver accepts): for validating input at the API. A DNS name is resolved and checked again each time
    the webhook is sent, by :func:`check_url`."""
    _scheme, host, port, _path = _parse(url, allow_local)
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST
        )
    except (OSError, UnicodeError):
        return  # a name, not a numeric address
    _refuse_addresses(host, [str(info[4][0]) for info in infos], allow_local)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes  # at most MAX_RESPONSE_BYTES


def post(
    target: Target,
    content: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = MAX_RESPONSE_BYTES,
    verify: bool | str = True,
) -> Reply:
    """POST to the pinned address with ``Host``/SNI of the original host; no redirects; bounded.

    The whole exchange (connect, send, headers, body) must finish within ``timeout`` seconds and at most
    ``max_bytes`` of the response body are read."""
    deadline = time.monotonic() + timeout
    url = f"{target.scheme}://{_bracket(target.address)}:{target.port}{target.path}"
    default_port = 443 if target.scheme == "https" else 80
    host_header = _bracket(target.host)
    if target.port != default_port:
        host_header = f"{host_header}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    with httpx.Client(verify=verify, follow_redirects=False, trust_env=False, timeout=timeout) as client:
        request = client.build_request(
            "POST", url, content=content, headers={**headers, "host": host_header}, extensions=extensions
        )
        response = client.send(request, stream=True)
        try:
            body = bytearray()
            for chunk in response.iter_raw():
                body.extend(chunk[: max_bytes - len(body)])
                if len(body) >= max_bytes or time.monotonic() > deadline:
                    break
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout("the receiver took longer than the time allowed")
        finally:
            response.close()
    return Reply(response.status_code, bytes(body))
