"""Fetching a URL (audio for /transcribe-url) and posting to one (webhooks) without becoming an SSRF proxy.

- Only `http` and `https`; no credentials in the URL.
- The host is resolved once and *every* address it resolves to must be public: no loopback,
  private, shared (CGNAT), link-local (cloud metadata 169.254.169.254, fd00:ec2::254), multicast,
  reserved or documentation ranges, and no IPv6 forms that embed an IPv4 address (mapped, NAT64,
  6to4). Decimal, hex, octal and short IPv4 forms are caught because the check runs on what the
  resolver returns, not on the text. `URL_FETCH_ALLOWLIST` (CIDRs) admits chosen private ranges.
- The connection goes to the address that was checked (httpcore's network backend is replaced),
  so a DNS answer that changes between check and connect (rebinding) cannot slip through; TLS
  still verifies the certificate against the host name.
- Redirects are followed by hand, at most `URL_FETCH_MAX_REDIRECTS`, each checked again.
- The size is capped (Content-Length first, then counted) and so is the time: one deadline covers
  connecting, the response headers and the body of every hop together (each socket read and write
  waits at most until it), so a host sending its headers a byte at a time cannot hold a fetch longer.
No proxy from the environment is used.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpcore

from transcription.errors import TooLarge, UrlFetchError, UrlRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

# Ranges refused even where Python's `is_global` says otherwise (or to state the intent plainly).
_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "::ffff:0:0/96", "::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32",
    "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)]
_REDIRECTS = {301, 302, 303, 307, 308}
_MAX_READ_S = 10.0  # one read may not wait longer than this (the whole fetch is capped separately)


def parse_allowlist(cidrs: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip()]


def refusal(ip: IPAddress, allowlist: Sequence[Network] = ()) -> str | None:
    """Why `ip` may not be fetched from, or None if it may."""
    if any(ip.version == net.version and ip in net for net in allowlist):
        return None
    inner = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    label = _label(inner or ip)
    if label or not ip.is_global or any(ip.version == n.version and ip in n for n in _BLOCKED):
        what = f"{ip} (IPv4-mapped {inner})" if inner else str(ip)
        return f"{what} is not a public address ({label or 'reserved or special-purpose'})"
    return None


def _label(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local, e.g. cloud metadata"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(host: str, port: int, allowlist: Sequence[Network], resolver: Resolver) -> list[str]:
    """Resolve `host` and return its addresses if every one is allowed; else `UrlRefused`."""
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as e:
        raise UrlFetchError(f"cannot resolve host {host!r}: {e}") from None
    if not addresses:
        raise UrlFetchError(f"host {host!r} has no address")
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise UrlRefused(f"host {host!r} resolved to an unusable address {address!r}") from None
        reason = refusal(ip, allowlist)
        if reason is not None:
            shown = f"host {host!r} resolves to {reason}" if host != address else reason
            raise UrlRefused(f"refusing to fetch: {shown}")
    return addresses


def _until(deadline: float, timeout: float | None, error: type[Exception]) -> float:
    """A timeout that ends by `deadline` at the latest; `error` when it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("the fetch's deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write ends by one deadline (httpcore's own timeouts
    apply per call, so a peer trickling bytes would otherwise never time out)."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self.stream = stream
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, _until(self.deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, _until(self.deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        tls = self.stream.start_tls(ssl_context, server_hostname, _until(self.deadline, timeout,
                                                                          httpcore.ConnectTimeout))
        return DeadlineStream(tls, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses that passed the check, with every
    connect, read and write ending by `deadline`."""

    def __init__(self, allowlist: Sequence[Network], resolver: Resolver, deadline: float = float("inf")) -> None:
        self.allowlist = allowlist
        self.resolver = resolver
        self.deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        addresses = checked_addresses(host, port, self.allowlist, self.resolver)
        last: Exception | None = None
        for address in addresses:  # connect to the checked address itself: no second lookup
            try:
                stream = super().connect_tcp(address, port, _until(self.deadline, timeout, httpcore.ConnectTimeout),
                                             local_address, socket_options)
                return DeadlineStream(stream, self.deadline)
            except httpcore.ConnectError as e:
                last = e
        assert last is not None
        raise last

    def connect_unix_socket(self, *args: object, **kwargs: object) -> httpcore.NetworkStream:
        raise UrlRefused("unix sockets are not fetched")


def _target(url: str) -> tuple[httpcore.URL, bytes]:
    """A checked, normalised request URL and its Host header; `UrlRefused` for anything odd."""
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise UrlRefused("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UrlRefused(f"not a valid URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs are fetched, not {scheme + ':' if scheme else 'this'}")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("credentials in the URL are not supported")
    host = parts.hostname
    if not host:
        raise UrlRefused("the URL has no host")
    try:
        ascii_host = host.encode("idna") if not host.isascii() else host.encode("ascii")
    except UnicodeError:
        raise UrlRefused(f"invalid host name {host!r}") from None
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    target = path + (f"?{query}" if query else "")
    netloc_host = f"[{host}]" if ":" in host else ascii_host.decode()
    host_header = netloc_host + (f":{port}" if port else "")
    return (httpcore.URL(scheme=scheme.encode(), host=ascii_host, port=port, target=target.encode()),
            host_header.encode())


def fetch_url(url: str, *, max_bytes: int, timeout_s: float, allowlist: Iterable[str] = (), max_redirects: int = 5,
              resolver: Resolver | None = None) -> bytes:
    """The body at `url`, or `UrlRefused` / `UrlFetchError` / `TooLarge` with the reason."""
    nets = parse_allowlist(allowlist)
    deadline = time.monotonic() + timeout_s
    backend = GuardedBackend(nets, resolver or system_resolver, deadline)
    with httpcore.ConnectionPool(network_backend=backend, max_connections=2, retries=0) as pool:
        current = url
        for _ in range(max_redirects + 1):
            target, host_header = _target(current)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UrlFetchError(f"fetching the URL took longer than {timeout_s:.0f} s")
            step = min(remaining, _MAX_READ_S)
            headers = [(b"Host", host_header), (b"User-Agent", b"stt-router"), (b"Accept", b"audio/*, */*;q=0.5"),
                       (b"Accept-Encoding", b"identity")]
            try:
                with pool.stream("GET", target, headers=headers, extensions={
                    "timeout": {"connect": step, "read": step, "write": step, "pool": step}
                }) as response:
                    if response.status in _REDIRECTS:
                        location = _header(response.headers, b"location")
                        if not location:
                            raise UrlFetchError(f"redirect {response.status} without a Location")
                        current = urljoin(current, location)
                        continue
                    if not 200 <= response.status < 300:
                        raise UrlFetchError(f"the URL answered HTTP {response.status}")
                    return _read(response, max_bytes, deadline, timeout_s)
            except httpcore.TimeoutException:
                raise UrlFetchError(f"fetching the URL timed out (limit {timeout_s:.0f} s)") from None
            except (httpcore.UnsupportedProtocol, httpcore.NetworkError, httpcore.ProtocolError) as e:
                raise _transport_error(e, "fetch") from None
        raise UrlFetchError(f"more than {max_redirects} redirects")


def _transport_error(e: Exception, doing: str) -> UrlRefused | UrlFetchError:
    """httpcore's failure as ours: a scheme it cannot speak is refused, the rest failed to connect or read."""
    if isinstance(e, httpcore.UnsupportedProtocol):
        return UrlRefused(f"unsupported URL: {e}")
    return UrlFetchError(f"cannot {doing} the URL: {e or type(e).__name__}")


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def _read(response: httpcore.Response, max_bytes: int, deadline: float, timeout_s: float) -> bytes:
    declared = _header(response.headers, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"the URL's content is {declared} bytes, over the limit of {max_bytes}")
    body = bytearray()
    for piece in response.iter_stream():
        body += piece
        if len(body) > max_bytes:
            raise TooLarge(f"the URL's content is over the limit of {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise UrlFetchError(f"fetching the URL took longer than {timeout_s:.0f} s")
    return bytes(body)


def post_url(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float, allowlist: Iterable[str] = (),
             resolver: Resolver | None = None) -> int:
    """POST `body` to `url` once under the same rules as `fetch_url` (public addresses only, checked
    at connect time, one deadline); a redirect is not followed. The answer's status code, or
    `UrlRefused` / `UrlFetchError` with the reason."""
    nets = parse_allowlist(allowlist)
    deadline = time.monotonic() + timeout_s
    backend = GuardedBackend(nets, resolver or system_resolver, deadline)
    target, host_header = _target(url)
    step = min(timeout_s, _MAX_READ_S)
    sent = [(b"Host", host_header), (b"User-Agent", b"stt-router"), (b"Content-Length", str(len(body)).encode()),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())]
    with httpcore.ConnectionPool(network_backend=backend, max_connections=1, retries=0) as pool:
        try:
            with pool.stream("POST", target, headers=sent, content=body, extensions={
                "timeout": {"connect": step, "read": step, "write": step, "pool": step}
            }) as response:
                return response.status  # the body is not read: only the status counts
        except httpcore.TimeoutException:
            raise UrlFetchError(f"the POST timed out (limit {timeout_s:.0f} s)") from None
        except (httpcore.UnsupportedProtocol, httpcore.NetworkError, httpcore.ProtocolError) as e:
            raise _transport_error(e, "POST to") from None
