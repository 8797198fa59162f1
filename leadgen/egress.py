"""The egress policy: where a URL that a lead or an admin supplies may be fetched from.

Lead websites (the website audit and each of its redirect hops) and webhook endpoints are fetched only
over http or https, only from globally routable addresses on ports 80 and 443, or from an address inside
`EGRESS_ALLOWED_NETWORKS` (CIDR list; any port there). Everything else is refused: loopback, private,
link-local (cloud metadata at 169.254.169.254), shared (CGNAT 100.64.0.0/10), unique-local, multicast,
unspecified and reserved addresses, in any spelling the resolver accepts (`127.1`, `2130706433`,
`0x7f.1`, `0177.0.0.1`) and inside IPv6 forms that carry an IPv4 address (`::ffff:127.0.0.1`,
`::127.0.0.1`, NAT64 `64:ff9b::`, 6to4 `2002::`).

Two layers:

- `url_check` is syntax only (scheme, host, port, an address written in the URL): what forms and APIs
  check on save, and what every request and redirect hop is checked against before it is sent.
- `EgressTransport` (async, the website audit) and `EgressSyncTransport` (webhooks) resolve the host at
  connection time, refuse the connection if any address it resolves to is refused, and connect to the
  vetted address itself: a second DNS answer cannot swap it, while TLS (SNI, certificate) and the Host
  header keep the name. They never use a proxy from the environment.

A refusal raises `EgressRefused` (an httpx transport error) before any packet leaves for the address.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import httpcore
import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

BLOCKED_ADDRESS = "blocked_address"
ALLOWED_SCHEMES = ("http", "https")
ALLOWED_PORTS = (80, 443)
DEFAULT_PORTS = {"http": 80, "https": 443}
# Hops of a redirect chain followed by hand (each one checked like the first URL).
MAX_REDIRECTS = 5
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# What inet_aton (and so getaddrinfo) reads as an IPv4 address: 1 to 4 parts, decimal, octal or hex.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)


class EgressRefused(httpx.TransportError):
    """A URL or address the egress policy refuses; `message` says which and why, in one line."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def allowed_networks() -> tuple[Network, ...]:
    """EGRESS_ALLOWED_NETWORKS as networks."""
    return _networks(tuple(str(value) for value in getattr(settings, "EGRESS_ALLOWED_NETWORKS", None) or ()))


@functools.lru_cache(maxsize=8)
def _networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    return networks_parse(values)


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _kind(address: Address) -> str | None:
    """Why `address` is not globally routable ("loopback", "private", ...), or None when it is."""
    if address.is_unspecified or address in _THIS_NETWORK:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address in _CGNAT:
        return "shared (CGNAT)"
    if address in _UNIQUE_LOCAL:
        return "unique-local"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


def address_refusal(address: Address, port: int) -> str | None:
    """Why a connection to `address`:`port` is refused, or None when the policy allows it."""
    embedded = _embedded_ipv4(address)
    networks = allowed_networks()
    if any(candidate in network for candidate in (address, embedded) if candidate for network in networks):
        return None
    kind = _kind(address) or (_kind(embedded) if embedded is not None else None)
    if kind is not None:
        return f"{address} is a {kind} address"
    if port not in ALLOWED_PORTS:
        return f"port {port} is not allowed (only {' and '.join(map(str, ALLOWED_PORTS))})"
    return None


def host_literal(host: str) -> Address | None:
    """The address written as `host`, in any form the system resolver reads as one, or None for a name."""
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def url_check(url: str | httpx.URL) -> httpx.URL:
    """`url` parsed, if its syntax, scheme, port and any address written in it are allowed; raises
    EgressRefused otherwise. Names are not resolved here: that happens at connection time."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(str(url).strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise EgressRefused(f"not a valid URL: {exc}") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise EgressRefused(f"scheme {parsed.scheme or '(none)'!r} is not allowed (only http and https)")
    if not parsed.host:
        raise EgressRefused("the URL has no host")
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    literal = host_literal(parsed.host)
    if literal is not None:
        reason = address_refusal(literal, port)
        if reason:
            raise EgressRefused(reason)
    elif port not in ALLOWED_PORTS and not allowed_networks():
        raise EgressRefused(f"port {port} is not allowed (only {' and '.join(map(str, ALLOWED_PORTS))})")
    return parsed


def url_validator(value: str) -> None:
    """Model and form validator of a URL the product will fetch (a lead's website, a webhook)."""
    if not value:
        return
    candidate = value if "://" in value else f"http://{value}"
    try:
        url_check(candidate)
    except EgressRefused as exc:
        raise ValidationError(f"This address cannot be used: {exc.message}.", code=BLOCKED_ADDRESS) from exc


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


_resolver: Resolver = _system_resolver
_resolver_lock = threading.Lock()


@contextlib.contextmanager
def override_resolver(resolver: Resolver) -> Iterator[Resolver]:
    """Answer every host lookup of the egress transports with `resolver(host, port)` (a list of
    addresses), process-wide, e.g. a name that resolves to a private address."""
    global _resolver
    with _resolver_lock:
        previous, _resolver = _resolver, resolver
    try:
        yield resolver
    finally:
        with _resolver_lock:
            _resolver = previous


def resolve_vetted(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, all allowed for `port`; raises EgressRefused when any is not
    (a name that answers one public and one internal address is refused) and httpcore.ConnectError
    when the name does not resolve."""
    literal = host_literal(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = list(dict.fromkeys(_resolver(host, port)))
        except socket.gaierror as exc:
            raise httpcore.ConnectError(str(exc)) from exc
    if not addresses:
        raise httpcore.ConnectError(f"{host} has no address")
    for address in addresses:
        reason = address_refusal(ipaddress.ip_address(address.split("%")[0]), port)
        if reason:
            raise EgressRefused(reason if literal is not None else f"{host} resolves to {address}: {reason}")
    return addresses


def url_vet(url: str) -> httpx.URL:
    """`url_check` and then its host resolved and vetted (what a fetch will do first)."""
    parsed = url_check(url)
    resolve_vetted(parsed.host, parsed.port or DEFAULT_PORTS[parsed.scheme])
    return parsed


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self):
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = await asyncio.get_running_loop().run_in_executor(None, resolve_vetted, host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise EgressRefused("Unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """A sync stream whose every operation ends by one deadline (a total deadline for a whole call)."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float):
        self._inner = inner
        self._deadline = deadline

    def _timeout(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the total deadline has passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes, timeout=None):
        return self._inner.read(max_bytes, timeout=self._timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer, timeout=None):
        self._inner.write(buffer, timeout=self._timeout(timeout, httpcore.WriteTimeout))

    def close(self):
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        stream = self._inner.start_tls(
            ssl_context,
            server_hostname=server_hostname,
            timeout=self._timeout(timeout, httpcore.ConnectTimeout),
        )
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info):
        return self._inner.get_extra_info(info)


class _SyncBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: float | None):
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        addresses = resolve_vetted(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                if self._deadline is None:
                    return self._inner.connect_tcp(
                        address,
                        port,
                        timeout=timeout,
                        local_address=local_address,
                        socket_options=socket_options,
                    )
                left = self._deadline - time.monotonic()
                if left <= 0:
                    raise httpcore.ConnectTimeout("the total deadline has passed")
                stream = self._inner.connect_tcp(
                    address,
                    port,
                    timeout=left if timeout is None else min(timeout, left),
                    local_address=local_address,
                    socket_options=socket_options,
                )
                return _DeadlineStream(stream, self._deadline)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise EgressRefused("Unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _pool_options(limits: httpx.Limits, ssl_context: ssl.SSLContext | None) -> dict:
    return {
        "ssl_context": ssl_context or httpx.create_ssl_context(trust_env=False),
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }


class EgressTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the egress policy: each request's URL is checked, each connection goes
    to an address vetted at connection time. `ssl_context` (default: the system's CAs) verifies the
    certificate against the host name of the URL."""

    def __init__(self, *, limits: httpx.Limits = POOL_LIMITS, ssl_context: ssl.SSLContext | None = None):
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            network_backend=_AsyncBackend(), **_pool_options(limits, ssl_context)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url_check(request.url)
        return await super().handle_async_request(request)


class EgressSyncTransport(httpx.HTTPTransport):
    """The sync twin of EgressTransport; `deadline` (time.monotonic()) ends every connection's reads and
    writes, so a receiver that drips bytes cannot hold the caller past it."""

    def __init__(self, *, deadline: float | None = None, limits: httpx.Limits = POOL_LIMITS):
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            network_backend=_SyncBackend(deadline), **_pool_options(limits, None)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url_check(request.url)
        return super().handle_request(request)


def networks_parse(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR strings as networks; raises ValueError naming the first one that is not a network."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network in CIDR notation") from exc
    return tuple(networks)
