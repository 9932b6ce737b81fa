"""Fetch web pages and sitemaps for the knowledge base, politely and safely.

Every request is bounded (bytes, time, redirects), stays on the start host unless told otherwise, obeys
robots.txt, and refuses addresses inside the network (SSRF): the check runs on each URL before the request and
again on the address actually connected to, so a DNS answer that changes between the two does not get through.
"""

from __future__ import annotations

import gzip
import ipaddress
import socket
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import httpcore
import httpx
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

FetchFailure = Literal[
    "invalid_url",
    "forbidden_address",
    "off_host",
    "robots",
    "too_large",
    "timeout",
    "too_many_redirects",
    "page_limit",
    "http_status",
    "network",
    "bad_sitemap",
]

SITEMAP_NAMESPACE = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


class FetchError(Exception):
    """A URL could not be fetched; `str(error)` says why in words fit for the person who added the source."""

    def __init__(self, message: str, *, reason: FetchFailure, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.url = url
        self.status = status


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 5 * 1024 * 1024
    max_pages: int = 500
    # Applies to connecting, to each read, and to a whole response (so a server trickling bytes is cut off).
    timeout_seconds: float = 15.0
    max_redirects: int = 5
    same_host_only: bool = True
    # Further hosts a crawl may visit when same_host_only (e.g. "docs.example.com" next to "example.com").
    extra_hosts: frozenset[str] = frozenset()
    # Private, loopback and reserved addresses; link-local (cloud metadata) and multicast are refused regardless.
    allow_private: bool = False
    respect_robots_txt: bool = True
    user_agent: str = "ParleyBot/0.1 (knowledge base crawler)"
    max_sitemaps: int = 50
    max_sitemap_depth: int = 3


@dataclass(frozen=True)
class FetchedPage:
    url: str  # after redirects
    status: int
    content: bytes
    content_type: str | None
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class NotModified:
    url: str


@dataclass(frozen=True)
class SitemapEntry:
    url: str
    lastmod: datetime | None


def fetch_page(
    url: str, *, limits: FetchLimits, etag: str | None = None, last_modified: str | None = None
) -> FetchedPage | NotModified:
    """Fetch one URL. With the ETag/Last-Modified of a previous fetch, an unchanged page gives `NotModified`."""
    with CrawlSession(start_url=url, limits=limits) as session:
        return session.fetch_page(url, etag=etag, last_modified=last_modified)


def read_sitemap(url: str, *, limits: FetchLimits) -> list[SitemapEntry]:
    """Page URLs listed by a sitemap or sitemap index, on allowed hosts, at most `limits.max_pages`."""
    with CrawlSession(start_url=url, limits=limits) as session:
        return session.read_sitemap(url)


@dataclass
class CrawlSession:
    """One crawl: a connection pool, robots.txt rules per site, and the page budget.

    Use it for a sitemap and the pages it lists, so limits and robots.txt apply across the whole crawl:

        with CrawlSession(start_url=sitemap_url, limits=limits) as crawl:
            for entry in crawl.read_sitemap(sitemap_url):
                page = crawl.fetch_page(entry.url)
    """

    start_url: str
    limits: FetchLimits
    pages_fetched: int = 0
    _robots: dict[str, RobotFileParser | None] = field(default_factory=dict)
    _client: httpx.Client | None = None

    def __post_init__(self) -> None:
        start_host = _parse_http_url(self.start_url).host
        self._allowed_hosts = {start_host.lower(), *(host.lower() for host in self.limits.extra_hosts)}

    def __enter__(self) -> CrawlSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def fetch_page(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchedPage | NotModified:
        if self.pages_fetched >= self.limits.max_pages:
            raise FetchError(
                f"The crawl stopped after {self.limits.max_pages} pages (the page limit).",
                reason="page_limit",
                url=url,
            )
        self.pages_fetched += 1
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        return self._get(url, headers=headers)

    def read_sitemap(self, url: str) -> list[SitemapEntry]:
        entries: dict[str, SitemapEntry] = {}
        visited: set[str] = set()
        self._read_sitemap_into(url, entries=entries, visited=visited, depth=0)
        return list(entries.values())

    def _read_sitemap_into(self, url: str, *, entries: dict[str, SitemapEntry], visited: set[str], depth: int) -> None:
        url = _without_fragment(url)
        # Sitemap indexes that list themselves or each other would otherwise be read forever.
        if url in visited or len(visited) >= self.limits.max_sitemaps or depth > self.limits.max_sitemap_depth:
            return
        visited.add(url)
        response = self._get(url, headers={})
        if isinstance(response, NotModified):
            return
        root = _parse_sitemap_xml(response.content, url=response.url, max_bytes=self.limits.max_bytes)
        if root.tag == f"{SITEMAP_NAMESPACE}sitemapindex":
            for child_url, _ in _sitemap_locations(root, "sitemap", base_url=response.url):
                if self._host_allowed(child_url) and len(entries) < self.limits.max_pages:
                    self._read_sitemap_into(child_url, entries=entries, visited=visited, depth=depth + 1)
        elif root.tag == f"{SITEMAP_NAMESPACE}urlset":
            for page_url, lastmod in _sitemap_locations(root, "url", base_url=response.url):
                if len(entries) >= self.limits.max_pages:
                    return
                if self._host_allowed(page_url):
                    entries.setdefault(page_url, SitemapEntry(url=page_url, lastmod=lastmod))
        else:
            raise FetchError(f"{url} is not a sitemap (its root element is {root.tag}).", reason="bad_sitemap", url=url)

    def _get(self, url: str, *, headers: dict[str, str], check_robots: bool = True) -> FetchedPage | NotModified:
        original_url = url
        for _ in range(self.limits.max_redirects + 1):
            self._check_url(url)
            if check_robots and self.limits.respect_robots_txt and not self._robots_allow(url):
                raise FetchError(f"{url} is disallowed by the site's robots.txt.", reason="robots", url=url)
            status, response_headers, content, final_url = self._request(url, headers=headers)
            if status in (301, 302, 303, 307, 308) and "location" in response_headers:
                url = _without_fragment(urljoin(url, response_headers["location"]))
                continue
            if status == 304:
                return NotModified(url=url)
            if not 200 <= status < 300:
                raise FetchError(f"{url} answered HTTP {status}.", reason="http_status", url=url, status=status)
            return FetchedPage(
                url=final_url,
                status=status,
                content=content,
                content_type=response_headers.get("content-type"),
                etag=response_headers.get("etag"),
                last_modified=response_headers.get("last-modified"),
            )
        raise FetchError(
            f"{original_url} redirected more than {self.limits.max_redirects} times.",
            reason="too_many_redirects",
            url=original_url,
        )

    def _request(self, url: str, *, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes, str]:
        deadline = time.monotonic() + self.limits.timeout_seconds
        try:
            with self._http().stream("GET", url, headers=headers) as response:
                declared_length = response.headers.get("content-length")
                if declared_length and declared_length.isdigit() and int(declared_length) > self.limits.max_bytes:
                    raise self._too_large(url)
                body = bytearray()
                for piece in response.iter_raw():
                    body += piece
                    if len(body) > self.limits.max_bytes:
                        raise self._too_large(url)
                    if time.monotonic() > deadline:
                        raise FetchError(
                            f"{url} took longer than {self.limits.timeout_seconds:g} seconds.",
                            reason="timeout",
                            url=url,
                        )
                content = _decode_content_encoding(
                    bytes(body), encoding=response.headers.get("content-encoding", ""), max_bytes=self.limits.max_bytes
                )
                if content is None:
                    raise self._too_large(url)
                return response.status_code, dict(response.headers.items()), content, str(response.url)
        except ForbiddenAddressError as error:
            raise FetchError(str(error), reason="forbidden_address", url=url) from error
        except httpx.TimeoutException as error:
            raise FetchError(
                f"{url} did not answer within {self.limits.timeout_seconds:g} seconds.", reason="timeout", url=url
            ) from error
        except httpx.HTTPError as error:
            if isinstance(error.__cause__, ForbiddenAddressError) or isinstance(
                error.__context__, ForbiddenAddressError
            ):
                raise FetchError(str(error), reason="forbidden_address", url=url) from error
            raise FetchError(f"{url} could not be reached: {error}.", reason="network", url=url) from error

    def _too_large(self, url: str) -> FetchError:
        return FetchError(
            f"{url} is larger than {self.limits.max_bytes:,} bytes (the limit).", reason="too_large", url=url
        )

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = address_checked_client(
                allow_private=self.limits.allow_private,
                timeout_s=self.limits.timeout_seconds,
                user_agent=self.limits.user_agent,
            )
            self._client.headers["Accept-Encoding"] = "gzip, deflate"
        return self._client

    def _check_url(self, url: str) -> None:
        parts = _parse_http_url(url)
        if not self._host_allowed(url):
            raise FetchError(
                f"{url} is on another site ({parts.host}); only {self._describe_allowed_hosts()} may be fetched.",
                reason="off_host",
                url=url,
            )
        host = parts.host
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, parts.port or 80, type=socket.SOCK_STREAM)}
        except socket.gaierror as error:
            raise FetchError(f"The host {host} could not be found.", reason="network", url=url) from error
        try:
            for address in addresses:
                address_check(address, host=host, allow_private=self.limits.allow_private)
        except ForbiddenAddressError as error:
            raise FetchError(str(error), reason="forbidden_address", url=url) from error

    def host_allowed(self, url: str) -> bool:
        """Whether the crawl may visit `url`'s host (the start host, or any with same_host_only off)."""
        return self._host_allowed(url)

    def _host_allowed(self, url: str) -> bool:
        if not self.limits.same_host_only:
            return True
        try:
            host = _parse_http_url(url).host.lower()
        except FetchError:
            return False
        return host in self._allowed_hosts

    def _describe_allowed_hosts(self) -> str:
        return ", ".join(sorted(self._allowed_hosts))

    def robots_allow(self, url: str) -> bool:
        """Whether the site's robots.txt lets the crawler fetch `url` (always, with respect_robots_txt off)."""
        return not self.limits.respect_robots_txt or self._robots_allow(url)

    def _robots_allow(self, url: str) -> bool:
        parts = urlsplit(url)
        site = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        if site not in self._robots:
            self._robots[site] = self._load_robots(site)
        rules = self._robots[site]
        return rules is None or rules.can_fetch(self.limits.user_agent, url)

    def _load_robots(self, site: str) -> RobotFileParser | None:
        robots_url = f"{site}/robots.txt"
        rules = RobotFileParser(robots_url)
        try:
            response = self._get(robots_url, headers={}, check_robots=False)
        except FetchError as error:
            if error.reason == "forbidden_address":
                raise
            if (error.status is not None and 400 <= error.status < 500) or error.reason == "off_host":
                return None  # RFC 9309: no robots.txt means no restrictions.
            # Unreachable robots.txt (5xx, network failure): RFC 9309 says assume everything is disallowed.
            rules.disallow_all = True
            return rules
        if isinstance(response, FetchedPage):
            rules.parse(response.content.decode("utf-8", errors="replace").splitlines())
        return rules


class ForbiddenAddressError(Exception):
    """An address Parley may not connect to (the network it runs in, or cloud metadata)."""


# IPv6 forms that carry an IPv4 address inside: the IPv4 address is what a NAT64 gateway or a 6to4 relay reaches.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
# Deprecated or local-only ranges that Python's `is_global` calls global: IPv4-compatible addresses (::a.b.c.d,
# RFC 4291), site-local (fec0::/10, RFC 3879), the returned 6bone (3ffe::/16), local-use NAT64 (RFC 8215).
_DENIED_V6 = [ipaddress.ip_network(n) for n in ("::/96", "fec0::/10", "3ffe::/16", "64:ff9b:1::/48")]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def address_check(address: str, *, host: str, allow_private: bool) -> None:
    """Raise `ForbiddenAddressError` unless Parley may connect to `address` (what `host` resolved to): never
    link-local (cloud metadata) or multicast, and no private, loopback or reserved address unless `allow_private`.
    An IPv4 address wrapped in IPv6 (mapped, NAT64, 6to4, Teredo) is checked as itself."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in _DENIED_V6) and not allow_private:
            raise ForbiddenAddressError(f"{host} resolves to {ip}, a deprecated or local-only address; refused.")
        ip = _embedded_ipv4(ip) or ip
    # Link-local holds cloud metadata services (169.254.169.254); nothing a knowledge base needs lives there.
    if ip.is_link_local or ip.is_multicast:
        raise ForbiddenAddressError(f"{host} resolves to {ip}, a link-local or multicast address; refused.")
    if not allow_private and not ip.is_global:
        raise ForbiddenAddressError(
            f"{host} resolves to {ip}, a private or internal address; refused to protect the internal network."
        )


def address_checked_client(*, allow_private: bool, timeout_s: float, user_agent: str) -> httpx.Client:
    """An HTTP client that connects only where `address_check` allows, checked on the address each connection
    really goes to (no DNS rebinding), never through environment proxies, never following redirects."""
    return httpx.Client(
        transport=address_checked_transport(allow_private=allow_private),
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        # Environment proxies would connect on our behalf and skip the address check.
        trust_env=False,
        headers={"User-Agent": user_agent},
    )


class _AddressCheckingBackend(httpcore.SyncBackend):
    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: object = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise httpcore.ConnectError(str(error)) from error
        for *_, sockaddr in infos:
            address_check(sockaddr[0], host=host, allow_private=self._allow_private)
        # Connect to the address just checked, not to the name (which could resolve differently a second time).
        return super().connect_tcp(
            infos[0][4][0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )


def _parse_http_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as error:
        raise FetchError(f"“{url}” is not a valid URL.", reason="invalid_url", url=url) from error
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(f"“{url}” is not an http(s) URL.", reason="invalid_url", url=url)
    return parsed


def _without_fragment(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(fragment=""))


def _decode_content_encoding(body: bytes, *, encoding: str, max_bytes: int) -> bytes | None:
    """The body without its Content-Encoding, or None if it inflates past `max_bytes` (a gzip bomb)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return body
    wbits = zlib.MAX_WBITS | 32 if encoding != "deflate" else zlib.MAX_WBITS
    try:
        return _inflate(body, wbits=wbits, max_bytes=max_bytes)
    except zlib.error:
        if encoding == "deflate":
            return _inflate(body, wbits=-zlib.MAX_WBITS, max_bytes=max_bytes)  # raw deflate, as some servers send
        raise


def _inflate(data: bytes, *, wbits: int, max_bytes: int) -> bytes | None:
    decompressor = zlib.decompressobj(wbits)
    output = decompressor.decompress(data, max_bytes + 1)
    return None if len(output) > max_bytes else output


def _parse_sitemap_xml(content: bytes, *, url: str, max_bytes: int) -> ElementTree.Element:
    if content[:2] == b"\x1f\x8b":  # sitemap.xml.gz served as a file, not as a Content-Encoding
        try:
            inflated = _inflate(content, wbits=zlib.MAX_WBITS | 16, max_bytes=max_bytes)
        except (zlib.error, gzip.BadGzipFile) as error:
            raise FetchError(f"{url} is a damaged gzip file.", reason="bad_sitemap", url=url) from error
        if inflated is None:
            raise FetchError(f"{url} expands past {max_bytes:,} bytes (the limit).", reason="too_large", url=url)
        content = inflated
    try:
        return ElementTree.fromstring(content, forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as error:
        raise FetchError(f"{url} is not a valid sitemap: {error}.", reason="bad_sitemap", url=url) from error


def _sitemap_locations(
    root: ElementTree.Element, item_tag: str, *, base_url: str
) -> Iterator[tuple[str, datetime | None]]:
    for item in root.iter(f"{SITEMAP_NAMESPACE}{item_tag}"):
        location = (item.findtext(f"{SITEMAP_NAMESPACE}loc") or "").strip()
        if not location:
            continue
        absolute = _without_fragment(urljoin(base_url, location))
        if urlsplit(absolute).scheme not in ("http", "https"):
            continue
        yield absolute, _parse_lastmod(item.findtext(f"{SITEMAP_NAMESPACE}lastmod"))


def _parse_lastmod(value: str | None) -> datetime | None:
    """W3C datetime as sitemaps use it: a date, or a date and time with a zone. Naive values are taken as UTC."""
    if not value or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --- the same address checks for other outbound requests (event webhooks) --------------------------------------


def address_problem(url: str, *, allow_private: bool, unknown_host_ok: bool = False) -> str | None:
    """Why a request to `url` would be refused (not an http(s) URL, an unknown host, an internal address), or None.
    With `unknown_host_ok`, a host that does not resolve now is no reason (a form refusing an intranet address at
    once leaves the rest to ingestion, which says so)."""
    try:
        parts = _parse_http_url(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        for info in socket.getaddrinfo(parts.host, port, type=socket.SOCK_STREAM):
            address_check(info[4][0], host=parts.host, allow_private=allow_private)
    except FetchError as error:
        return None if unknown_host_ok else str(error)
    except (socket.gaierror, UnicodeError):
        return None if unknown_host_ok else f"The host of {url} could not be found."
    except ForbiddenAddressError as error:
        return str(error)
    return None


def address_checked_transport(*, allow_private: bool) -> httpx.HTTPTransport:
    """An httpx transport that checks every address it connects to (as the crawler's does: no DNS rebinding)."""
    transport = httpx.HTTPTransport(retries=0)
    # httpx has no public hook for its network backend. Swapping it lets every connection be checked against the
    # address it really connects to, which closes the DNS-rebinding gap of a check made only before the request.
    transport._pool._network_backend = _AddressCheckingBackend(allow_private=allow_private)
    return transport
