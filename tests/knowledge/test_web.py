import contextlib
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from knowledge.web import (
    CrawlSession,
    FetchedPage,
    FetchError,
    FetchLimits,
    ForbiddenAddressError,
    NotModified,
    SitemapEntry,
    address_check,
    fetch_page,
    read_sitemap,
)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    chunked: bool = False


@dataclass
class Site:
    """A real HTTP server on 127.0.0.1 whose pages the test defines."""

    base_url: str
    routes: dict[str, Reply | Callable[[BaseHTTPRequestHandler], Reply]]
    requests: list[tuple[str, dict[str, str]]]

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def site() -> Iterator[Site]:
    routes: dict[str, Reply | Callable[[BaseHTTPRequestHandler], Reply]] = {}
    requests: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            requests.append((self.path, dict(self.headers.items())))
            route = routes.get(self.path, Reply(status=404, body=b"not found"))
            reply = route(self) if callable(route) else route
            time.sleep(reply.delay_seconds)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(reply.body), 65536):
                    piece = reply.body[start : start + 65536]
                    try:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    except OSError:
                        return
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(reply.body)

        def log_message(self, *args: object) -> None:
            pass

    class QuietServer(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # the client hanging up on an oversized or slow reply is what these tests provoke

    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(base_url=f"http://127.0.0.1:{server.server_port}", routes=routes, requests=requests)
    finally:
        server.shutdown()
        server.server_close()


LOCAL = FetchLimits(allow_private=True, timeout_seconds=5)


def html(text: str) -> Reply:
    return Reply(body=f"<html><body><p>{text}</p></body></html>".encode(), headers={"Content-Type": "text/html"})


def urlset(*locations: str, lastmod: str | None = None) -> Reply:
    items = "".join(
        f"<url><loc>{location}</loc>{f'<lastmod>{lastmod}</lastmod>' if lastmod else ''}</url>"
        for location in locations
    )
    body = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</urlset>'
    return Reply(body=body.encode(), headers={"Content-Type": "application/xml"})


def sitemap_index(*locations: str) -> Reply:
    items = "".join(f"<sitemap><loc>{location}</loc></sitemap>" for location in locations)
    body = (
        f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</sitemapindex>'
    )
    return Reply(body=body.encode(), headers={"Content-Type": "application/xml"})


def fetch_error(url: str, *, limits: FetchLimits = LOCAL, **kwargs: str) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch_page(url, limits=limits, **kwargs)
    return caught.value


def test_it_fetches_a_page_with_its_validators(site):
    site.routes["/about"] = Reply(
        body=b"<html><body>About us</body></html>",
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "ETag": '"v1"',
            "Last-Modified": "Tue, 01 Oct 2026 10:00:00 GMT",
        },
    )

    page = fetch_page(site.url("/about"), limits=LOCAL)

    assert page == FetchedPage(
        url=site.url("/about"),
        status=200,
        content=b"<html><body>About us</body></html>",
        content_type="text/html; charset=utf-8",
        etag='"v1"',
        last_modified="Tue, 01 Oct 2026 10:00:00 GMT",
    )
    assert site.requests[-1][1]["User-Agent"] == LOCAL.user_agent


def test_it_refuses_loopback_addresses_unless_private_ones_are_allowed(site):
    site.routes["/"] = html("internal admin")

    error = fetch_error(site.url("/"), limits=FetchLimits())

    assert error.reason == "forbidden_address"
    assert "127.0.0.1" in str(error)
    assert site.requests == []


# IPv4 inside IPv6: NAT64 (well-known and local-use), 6to4, IPv4-compatible, mapped, Teredo; deprecated site-local.
@pytest.mark.parametrize(
    "address",
    ["64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2002:a00:1::1", "::7f00:1", "::ffff:10.0.0.1",
     "fec0::1", "64:ff9b:1::a00:1", "3ffe::1", "2001:0:4136:e378:8000:63bf:80ff:fffe"],
)  # fmt: skip
def test_it_refuses_private_ipv4_addresses_wrapped_in_ipv6_and_deprecated_ranges(address):
    with pytest.raises(ForbiddenAddressError):
        address_check(address, host="rebind.test", allow_private=False)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111", "8.8.8.8"])
def test_it_still_fetches_from_public_addresses_in_those_forms(address):
    address_check(address, host="public.test", allow_private=False)


def test_it_refuses_a_redirect_to_a_cloud_metadata_address_even_on_a_private_network(site):
    site.routes["/go"] = Reply(status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    error = fetch_error(
        site.url("/go"), limits=FetchLimits(allow_private=True, same_host_only=False, timeout_seconds=2)
    )

    assert error.reason == "forbidden_address"
    assert "169.254.169.254" in str(error)


def test_it_refuses_a_redirect_to_another_host(site):
    site.routes["/go"] = Reply(status=301, headers={"Location": "http://localhost:1/elsewhere"})

    error = fetch_error(site.url("/go"))

    assert error.reason == "off_host"


def test_it_follows_redirects_on_the_same_host(site):
    site.routes["/old"] = Reply(status=301, headers={"Location": "/new"})
    site.routes["/new"] = html("moved here")

    page = fetch_page(site.url("/old"), limits=LOCAL)

    assert page.url == site.url("/new")
    assert b"moved here" in page.content


def test_it_gives_up_on_redirect_loops(site):
    site.routes["/a"] = Reply(status=302, headers={"Location": "/b"})
    site.routes["/b"] = Reply(status=302, headers={"Location": "/a"})

    assert fetch_error(site.url("/a")).reason == "too_many_redirects"


def test_it_respects_robots_txt(site):
    site.routes["/robots.txt"] = Reply(
        body=b"User-agent: *\nDisallow: /private/\n", headers={"Content-Type": "text/plain"}
    )
    site.routes["/private/salaries"] = html("salaries")
    site.routes["/public"] = html("hello")

    error = fetch_error(site.url("/private/salaries"))

    assert error.reason == "robots"
    assert "/private/salaries" not in [path for path, _ in site.requests]
    assert isinstance(fetch_page(site.url("/public"), limits=LOCAL), FetchedPage)


def test_it_treats_a_failing_robots_txt_as_disallow_all(site):
    site.routes["/robots.txt"] = Reply(status=503)
    site.routes["/page"] = html("hello")

    assert fetch_error(site.url("/page")).reason == "robots"


def test_it_refuses_pages_over_the_byte_limit(site):
    site.routes["/declared"] = Reply(body=b"x" * 200_000)
    site.routes["/streamed"] = Reply(body=b"x" * 200_000, chunked=True)
    limits = FetchLimits(allow_private=True, max_bytes=100_000, timeout_seconds=5)

    assert fetch_error(site.url("/declared"), limits=limits).reason == "too_large"
    assert fetch_error(site.url("/streamed"), limits=limits).reason == "too_large"


def test_it_refuses_a_gzip_bomb(site):
    site.routes["/bomb"] = Reply(body=gzip.compress(bytes(20_000_000)), headers={"Content-Encoding": "gzip"})
    limits = FetchLimits(allow_private=True, max_bytes=1_000_000, timeout_seconds=5)

    assert fetch_error(site.url("/bomb"), limits=limits).reason == "too_large"


def test_it_decodes_gzip_content(site):
    site.routes["/zipped"] = Reply(body=gzip.compress(b"<p>compressed page</p>"), headers={"Content-Encoding": "gzip"})

    assert fetch_page(site.url("/zipped"), limits=LOCAL).content == b"<p>compressed page</p>"


def test_it_times_out_slow_servers(site):
    site.routes["/slow"] = Reply(body=b"late", delay_seconds=2)

    error = fetch_error(site.url("/slow"), limits=FetchLimits(allow_private=True, timeout_seconds=0.5))

    assert error.reason == "timeout"


def test_it_reports_http_errors_with_their_status(site):
    error = fetch_error(site.url("/missing"))

    assert (error.reason, error.status) == ("http_status", 404)


def test_it_answers_not_modified_to_a_conditional_request(site):
    def conditional(handler: BaseHTTPRequestHandler) -> Reply:
        if handler.headers.get("If-None-Match") == '"v2"':
            return Reply(status=304, headers={"ETag": '"v2"'})
        return Reply(body=b"<p>fresh</p>", headers={"ETag": '"v2"'})

    site.routes["/doc"] = conditional

    first = fetch_page(site.url("/doc"), limits=LOCAL)
    second = fetch_page(site.url("/doc"), limits=LOCAL, etag=first.etag)

    assert second == NotModified(url=site.url("/doc"))
    assert site.requests[-1][1]["If-None-Match"] == '"v2"'


def test_it_sends_if_modified_since(site):
    site.routes["/doc"] = Reply(status=304)

    result = fetch_page(site.url("/doc"), limits=LOCAL, last_modified="Tue, 01 Oct 2026 10:00:00 GMT")

    assert isinstance(result, NotModified)
    assert site.requests[-1][1]["If-Modified-Since"] == "Tue, 01 Oct 2026 10:00:00 GMT"


def test_it_reads_sitemap_entries_with_lastmod(site):
    site.routes["/sitemap.xml"] = urlset(site.url("/a"), "/b", lastmod="2026-03-01")

    entries = read_sitemap(site.url("/sitemap.xml"), limits=LOCAL)

    assert entries == [
        SitemapEntry(url=site.url("/a"), lastmod=datetime(2026, 3, 1, tzinfo=UTC)),
        SitemapEntry(url=site.url("/b"), lastmod=datetime(2026, 3, 1, tzinfo=UTC)),
    ]


def test_it_drops_off_host_sitemap_entries(site):
    site.routes["/sitemap.xml"] = urlset(
        site.url("/mine"), "https://evil.example.com/theirs", site.url("/mine").replace("127.0.0.1", "localhost")
    )

    entries = read_sitemap(site.url("/sitemap.xml"), limits=LOCAL)

    assert [entry.url for entry in entries] == [site.url("/mine")]


def test_it_follows_sitemap_indexes_without_looping(site):
    site.routes["/sitemap.xml"] = sitemap_index(site.url("/sitemap-a.xml"), site.url("/sitemap.xml"))
    site.routes["/sitemap-a.xml"] = sitemap_index(site.url("/sitemap.xml"), site.url("/sitemap-pages.xml"))
    site.routes["/sitemap-pages.xml"] = urlset(site.url("/one"), site.url("/two"), site.url("/one"))

    entries = read_sitemap(site.url("/sitemap.xml"), limits=LOCAL)

    assert [entry.url for entry in entries] == [site.url("/one"), site.url("/two")]
    assert [path for path, _ in site.requests].count("/sitemap.xml") == 1


def test_it_caps_a_crawl_at_the_page_limit(site):
    site.routes["/sitemap.xml"] = urlset(*(site.url(f"/page-{number}") for number in range(20)))
    for number in range(20):
        site.routes[f"/page-{number}"] = html(f"page {number}")
    limits = FetchLimits(allow_private=True, max_pages=5, timeout_seconds=5)

    with CrawlSession(start_url=site.url("/sitemap.xml"), limits=limits) as crawl:
        entries = crawl.read_sitemap(site.url("/sitemap.xml"))
        pages = [crawl.fetch_page(entry.url) for entry in entries]
        with pytest.raises(FetchError) as caught:
            crawl.fetch_page(site.url("/page-19"))

    assert len(entries) == 5
    assert len(pages) == 5
    assert caught.value.reason == "page_limit"


def test_it_refuses_sitemaps_with_entity_tricks(site):
    billion_laughs = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&lol2;</loc></url></urlset>"""
    site.routes["/sitemap.xml"] = Reply(body=billion_laughs)

    with pytest.raises(FetchError) as caught:
        read_sitemap(site.url("/sitemap.xml"), limits=LOCAL)

    assert caught.value.reason == "bad_sitemap"


def test_it_rejects_urls_that_are_not_http(site):
    assert fetch_error("file:///etc/passwd").reason == "invalid_url"
    assert fetch_error("ftp://example.com/x").reason == "invalid_url"
