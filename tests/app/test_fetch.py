"""The SSRF-safe URL fetcher, in this process: every socket connect is recorded through Python's
audit hooks, so "refused" means no connection was even attempted, not just an error afterwards.

Cases that need a DNS name resolving to an internal address use a resolver function (no DNS
server can be configured here); everything else goes through the system resolver and real sockets.
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from app.errors import TooLarge, UrlFetchError, UrlRefused
from app.fetch import fetch_url, refusal
from tests.app.conftest import recorded_connects

MB = 1 << 20


def refused_urls(canary_port: int) -> list[str]:
    c = canary_port
    return [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS metadata over IPv6
        "http://0xa9fea9fe/latest/meta-data/",  # 169.254.169.254 in hex
        "http://2852039166/latest/meta-data/",  # ... in decimal
        "http://[::ffff:169.254.169.254]/",  # ... IPv4-mapped
        "http://[64:ff9b::a9fe:a9fe]/",  # ... through NAT64
        "http://[2002:a9fe:a9fe::1]/",  # ... through 6to4
        f"http://127.0.0.1:{c}/",
        f"http://127.0.0.2:{c}/",
        f"http://localhost:{c}/",  # a name resolving to loopback
        f"HTTP://LOCALHOST:{c}/",
        f"http://[::1]:{c}/",
        f"http://0.0.0.0:{c}/",  # means "this host" to connect()
        f"http://0:{c}/",
        f"http://[::]:{c}/",
        f"http://2130706433:{c}/",  # 127.0.0.1 in decimal
        f"http://0x7f000001:{c}/",  # ... in hex
        f"http://0177.0.0.1:{c}/",  # ... in octal
        f"http://127.1:{c}/",  # ... short form
        f"http://[::ffff:127.0.0.1]:{c}/",  # IPv4-mapped IPv6
        f"http://[::ffff:7f00:2]:{c}/",  # ... written in hex
        f"http://[::127.0.0.1]:{c}/",  # IPv4-compatible IPv6
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://[fc00::1]/",  # unique local
        "http://[fe80::1]/",  # link-local
        "http://224.0.0.1/",  # multicast
        "http://[ff02::1]/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",  # reserved
        "http://192.0.2.10/",  # documentation
        "http://198.18.0.1/",  # benchmarking
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{c}/_stats",
        "ftp://127.0.0.1/",
        "dict://127.0.0.1:11211/stat",
        "data:audio/wav;base64,UklGRg==",
        f"http://user:pass@127.0.0.1:{c}/",
        f"http://127.0.0.1:{c}/ x",
    ]


def test_refuses_internal_addresses_without_opening_a_socket(canary) -> None:
    urls = refused_urls(canary.port)
    assert len(urls) >= 30
    for url in urls:
        with recorded_connects() as connects, pytest.raises(UrlRefused) as refused:
            fetch_url(url, max_bytes=MB, timeout_s=5)
        assert connects == [], f"{url}: a socket was opened to {connects}"
        assert refused.value.reason, url
    assert canary.connections == 0


def test_reasons_say_what_is_wrong() -> None:
    def reason(url: str) -> str:
        with pytest.raises(UrlRefused) as e:
            fetch_url(url, max_bytes=MB, timeout_s=5)
        return e.value.reason

    assert "link-local" in reason("http://169.254.169.254/")
    assert "loopback" in reason("http://2130706433/") and "127.0.0.1" in reason("http://2130706433/")
    assert "IPv4-mapped 127.0.0.1" in reason("http://[::ffff:127.0.0.1]/")
    assert "private" in reason("http://10.1.2.3/")
    assert "only http and https" in reason("gopher://example.com/")
    assert "'localhost' resolves to" in reason("http://localhost/")


def test_names_resolving_to_internal_addresses_are_refused() -> None:
    """A fake resolver stands in for DNS (none can be configured here)."""
    zone = {
        "metadata.attacker.example": ["169.254.169.254"],
        "mixed.attacker.example": ["93.184.216.34", "10.1.2.3"],  # every address must be public
        "v6.attacker.example": ["fd00:ec2::254"],
    }
    for host in zone:
        with recorded_connects() as connects, pytest.raises(UrlRefused):
            fetch_url(f"http://{host}/a.wav", max_bytes=MB, timeout_s=5, resolver=lambda h, p: zone[h])
        assert connects == []


def test_connects_to_the_address_it_checked(site) -> None:
    """DNS rebinding: a second answer never matters, the socket goes to the checked address."""
    answers = [["127.0.0.1"], ["169.254.169.254"]]
    calls: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls), 2) - 1]

    with recorded_connects() as connects:
        body = fetch_url(f"http://rebind.test:{site.port}/speech.wav", max_bytes=MB, timeout_s=5,
                         allowlist=["127.0.0.1/32"], resolver=rebinding)
    assert body == site.files["/speech.wav"]
    assert calls == ["rebind.test"] and connects == [("127.0.0.1", site.port)]


def test_allowlisted_fetch_and_redirects(site) -> None:
    allow = ["127.0.0.1/32"]
    assert fetch_url(site.url("/speech.wav"), max_bytes=MB, timeout_s=5, allowlist=allow) == site.files["/speech.wav"]
    assert fetch_url(site.url("/to-speech"), max_bytes=MB, timeout_s=5, allowlist=allow) == site.files["/speech.wav"]


@pytest.mark.parametrize("path", ["/to-canary", "/to-canary-decimal", "/to-metadata", "/to-metadata-v6", "/to-file",
                                  "/to-gopher"])
def test_a_redirect_to_an_internal_address_is_refused(site, canary, path: str) -> None:
    with recorded_connects() as connects, pytest.raises(UrlRefused):
        fetch_url(site.url(path), max_bytes=MB, timeout_s=5, allowlist=["127.0.0.1/32"])
    assert set(connects) == {("127.0.0.1", site.port)}  # the allowed site only
    assert canary.connections == 0


def test_limits_and_upstream_errors(site) -> None:
    allow = ["127.0.0.1/32"]
    with pytest.raises(UrlFetchError, match="more than 5 redirects"):
        fetch_url(site.url("/loop"), max_bytes=MB, timeout_s=5, allowlist=allow)
    with pytest.raises(UrlFetchError, match="HTTP 404"):
        fetch_url(site.url("/missing.wav"), max_bytes=MB, timeout_s=5, allowlist=allow)
    with pytest.raises(TooLarge, match="1099511627776 bytes"):
        fetch_url(site.url("/big-declared.wav"), max_bytes=MB, timeout_s=5, allowlist=allow)
    with pytest.raises(TooLarge):
        fetch_url(site.url("/big-streamed.wav"), max_bytes=MB, timeout_s=5, allowlist=allow)
    started = time.monotonic()
    with pytest.raises(UrlFetchError, match="timed out"):
        fetch_url(site.url("/slow.wav"), max_bytes=MB, timeout_s=1, allowlist=allow)
    assert time.monotonic() - started < 4
    with pytest.raises(UrlFetchError, match="cannot resolve"):
        fetch_url("http://no-such-host.invalid/a.wav", max_bytes=MB, timeout_s=5)


def test_allowlist_is_exact() -> None:
    nets = [ipaddress.ip_network("127.0.0.1/32")]
    assert refusal(ipaddress.ip_address("127.0.0.1"), nets) is None
    assert refusal(ipaddress.ip_address("127.0.0.2"), nets) is not None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), nets) is not None  # no mapped back door
    for public in ("8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"):
        assert refusal(ipaddress.ip_address(public)) is None


def test_one_deadline_covers_connect_headers_and_body(site) -> None:
    """Issue 14, hole 2: a host sending its headers a byte at a time kept a fetch for 63 s with a 5 s
    limit (httpcore's read timeout is per read). The limit covers the whole fetch now."""
    started = time.monotonic()
    with pytest.raises(UrlFetchError, match="timed out"):
        fetch_url(site.url("/slow-headers.wav"), max_bytes=MB, timeout_s=1.5, allowlist=["127.0.0.1/32"])
    assert time.monotonic() - started < 2.5
