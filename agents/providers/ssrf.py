"""Server-side request forgery guard for provider base URLs.

Tenants type provider base URLs, so an unchecked URL would let them make our servers call
``http://169.254.169.254/`` (cloud credentials) or anything on the private network. The guard
runs twice:

* :func:`check_url` when a URL is saved or used: scheme, every spelling of an IP literal, and
  (optionally) every address the host name resolves to.
* :class:`GuardedNetworkBackend` when a connection is opened: the host is resolved again and the
  socket goes to an address that was just validated, so a DNS answer that changes between the
  check and the connect (DNS rebinding) cannot slip a private address through.

Operators can allow-list host names, IPs or CIDR networks (e.g. a local Ollama). Nothing here
imports Django; :class:`UnsafeURL` is a ``ValueError`` so form/model validation can use it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names that reach instance metadata without being an IP literal.
_BLOCKED_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})
_ALLOWED_SCHEMES = frozenset({"http", "https"})


class UnsafeURL(ValueError):
    """The URL is not allowed as an outbound provider endpoint."""


@dataclass(frozen=True, slots=True)
class AllowList:
    """Parsed operator allow-list: exact host names plus IP networks (single IPs are /32, /128)."""

    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry)
        return cls(frozenset(names), tuple(networks))

    def allows_ip(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)


def parse_ipv4_any_notation(host: str) -> ipaddress.IPv4Address | None:
    """Parse ``host`` the way ``inet_aton`` (and so ``getaddrinfo``) does.

    Accepts 1-4 dot-separated parts in decimal, ``0x`` hex or leading-zero octal, the last part
    filling the remaining bytes: ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1``
    all mean 127.0.0.1. Returns None when ``host`` is not numeric at all.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        text = part.lower()
        try:
            if text.startswith("0x"):
                values.append(int(text[2:] or "0", 16))
            elif len(text) > 1 and text.startswith("0"):
                values.append(int(text[1:], 8))
            elif text.isdigit():
                values.append(int(text, 10))
            else:
                return None
        except ValueError:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _looks_numeric(host: str) -> bool:
    return all(
        part.isalnum() and (part.isdigit() or part.startswith("0x")) for part in host.split(".")
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """IPv4 addresses carried inside IPv6 (mapped, 6to4, Teredo, NAT64) reach the same hosts."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_ip(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public_ip(inner):
            return False
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def check_ip(ip: IPAddress, allow: AllowList) -> None:
    """Raise :class:`UnsafeURL` unless ``ip`` is public or allow-listed."""
    if allow.allows_ip(ip):
        return
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and allow.allows_ip(inner):
            return
    if not is_public_ip(ip):
        raise UnsafeURL(f"address {ip} is not a public address")


def host_literal(host: str) -> IPAddress | None:
    """The IP a host string denotes without DNS, in any notation; None for a DNS name."""
    candidate = host.strip("[]")
    if "%" in candidate:  # IPv6 zone ids only make sense for link-local targets
        raise UnsafeURL("IPv6 zone identifiers are not allowed")
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    legacy = parse_ipv4_any_notation(candidate)
    if legacy is None and _looks_numeric(candidate):
        raise UnsafeURL(f"ambiguous numeric host {host!r}")
    return legacy


def _split_url(url: str) -> tuple[str, int]:
    """Host and port of ``url`` as the HTTP client will see them."""
    try:
        # httpx's own parser, so the checked host is exactly the host the client connects to.
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        # httpx refuses some legacy spellings (e.g. octal dotted quads): refuse them too.
        raise UnsafeURL("invalid URL") from None
    if parsed.scheme not in _ALLOWED_SCHEMES:
        raise UnsafeURL(f"scheme {parsed.scheme!r} is not allowed (http or https only)")
    if parsed.userinfo:
        raise UnsafeURL("credentials in the URL are not allowed")
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise UnsafeURL("URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return host, port


def check_host(host: str, allow: AllowList) -> IPAddress | None:
    """Validate a host without DNS. Returns its IP when it is a literal, None for a name that
    still needs resolving; raises :class:`UnsafeURL` when refused."""
    host = host.lower().rstrip(".")
    if host in allow.names:
        return None
    literal = host_literal(host)
    if literal is not None:
        check_ip(literal, allow)
        return literal
    if host in _BLOCKED_NAMES or host == "localhost" or host.endswith(".localhost"):
        raise UnsafeURL(f"host {host!r} is not allowed")
    return None


def check_url(url: str, *, allowed: Sequence[str] = (), resolve: bool = True) -> None:
    """Raise :class:`UnsafeURL` unless ``url`` is an http(s) URL to a public host.

    ``allowed`` holds operator allow-listed host names, IPs or CIDR networks. With ``resolve``
    (the default) the host name is resolved with ``getaddrinfo`` and every address must pass;
    that call blocks, so async callers pass ``resolve=False`` and rely on the connect-time guard.
    """
    allow = AllowList.parse(allowed)
    host, port = _split_url(url)
    if check_host(host, allow) is not None or not resolve or host in allow.names:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"host {host!r} does not resolve") from exc
    for info in infos:
        check_ip(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]), allow)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore backend that validates every resolved address right before connecting.

    The socket is opened to the validated IP, never to the name, so the address checked is the
    address used. TLS is unaffected: httpcore passes the original host as ``server_hostname``
    to ``start_tls``. A refusal raises :class:`UnsafeURL`, which httpx lets through unchanged.
    """

    def __init__(
        self, allowed: Sequence[str] = (), inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._allow = AllowList.parse(allowed)
        self._inner = inner or httpcore.AnyIOBackend()

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        literal = check_host(host, self._allow)
        if literal is not None:
            return [literal]
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"could not resolve host {host!r}") from exc
        addresses: list[IPAddress] = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if host.lower().rstrip(".") not in self._allow.names:
                check_ip(ip, self._allow)
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise httpcore.ConnectError(f"no addresses for host {host!r}")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from exc
        last_error: Exception | None = None
        # Try each validated address in turn (what anyio would do with the name itself).
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's backend signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeURL("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
