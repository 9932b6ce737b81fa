"""Crawling a website from a start page: same-host links, breadth first, within a page budget and a depth.

Every fetch goes through a `CrawlSession` (knowledge/web.py), so robots.txt, the byte and time limits and the
private-address checks apply to each page and redirect. Include and exclude patterns are shell-style patterns on a
URL's path ("/docs/*", "*.pdf"): an excluded page is never fetched; with include patterns, only matching pages are
(the start page is always read, for its links, but indexed only if it matches). For a re-sync the caller gives
what it knows of each page (its ETag, Last-Modified and links), so an unchanged page costs a 304 and its stored
links still lead on to the pages after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from urllib.parse import urljoin, urlsplit, urlunsplit

import lxml.html
from lxml.etree import ParserError

from knowledge.web import CrawlSession, FetchedPage, FetchError, NotModified

# Links to these are never pages of text: not worth a request.
SKIPPED_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".ico", ".bmp", ".tif", ".tiff", ".css", ".js", ".mjs",
    ".json", ".xml", ".rss", ".atom", ".zip", ".gz", ".tgz", ".rar", ".7z", ".exe", ".dmg", ".pkg", ".deb", ".rpm",
    ".apk", ".iso", ".mp3", ".mp4", ".m4a", ".wav", ".ogg", ".webm", ".mov", ".avi", ".woff", ".woff2", ".ttf",
    ".otf", ".eot",
})  # fmt: skip
HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class CrawlScope:
    max_depth: int = 5
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def allows(self, url: str) -> bool:
        path = urlsplit(url).path or "/"
        if any(fnmatchcase(path, pattern) for pattern in self.exclude):
            return False
        return not self.include or any(fnmatchcase(path, pattern) for pattern in self.include)


@dataclass(frozen=True)
class KnownPage:
    """What the previous crawl learnt of a page."""

    etag: str = ""
    last_modified: str = ""
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class CrawledPage:
    url: str
    depth: int
    # The page, NotModified (unchanged since the previous crawl), or why it could not be fetched.
    result: FetchedPage | NotModified | FetchError
    links: tuple[str, ...]
    # False for the start page when include patterns leave it out: read for its links only.
    index: bool = True


@dataclass
class SiteCrawler:
    """Breadth-first over one site: `pages()` yields each page as it is fetched; `discovered` counts the pages
    found so far (fetched or waiting), for a progress bar that grows as the site unfolds."""

    crawl: CrawlSession
    start_url: str
    scope: CrawlScope
    max_pages: int
    known: Callable[[str], KnownPage | None] = lambda url: None
    _seen: set[str] = field(default_factory=set)

    @property
    def discovered(self) -> int:
        return min(len(self._seen), self.max_pages)

    def pages(self) -> Iterator[CrawledPage]:
        start = normalise_url(self.start_url)
        queue: deque[tuple[str, int]] = deque([(start, 0)])
        self._seen = {start}
        fetched = 0
        while queue and fetched < self.max_pages:
            url, depth = queue.popleft()
            known = self.known(url)
            fetched += 1
            try:
                result = self.crawl.fetch_page(
                    url, etag=known.etag if known else None, last_modified=known.last_modified if known else None
                )
            except FetchError as error:
                yield CrawledPage(url=url, depth=depth, result=error, links=())
                continue
            if isinstance(result, NotModified):
                links = known.links if known else ()
            else:
                # Two links that redirect to one page (/docs and /docs/) index it once.
                final = normalise_url(result.url)
                if final != url and final in self._seen:
                    continue
                self._seen.add(final)
                links = tuple(page_links(result))
            if depth < self.scope.max_depth:
                for link in links:
                    if link not in self._seen and self._followable(link):
                        self._seen.add(link)
                        queue.append((link, depth + 1))
            yield CrawledPage(
                url=url, depth=depth, result=result, links=links, index=depth > 0 or self.scope.allows(url)
            )

    def _followable(self, link: str) -> bool:
        if not (self.crawl.host_allowed(link) and self.scope.allows(link)):
            return False
        # A page robots.txt keeps out is left out quietly, as if it were not linked (not a failure).
        try:
            return self.crawl.robots_allow(link)
        except FetchError:
            return False


def normalise_url(url: str) -> str:
    """One spelling per page: no fragment, a lowercase scheme and host, "/" for an empty path."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, ""))


def page_links(page: FetchedPage) -> list[str]:
    """The http(s) links of an HTML page, absolute and normalised, in document order, without repeats; none for
    other documents, or when the page asks robots not to follow its links."""
    content_type = (page.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type not in HTML_TYPES:
        return []
    try:
        tree = lxml.html.fromstring(page.content)
    except (ParserError, ValueError):
        return []
    robots = " ".join(tree.xpath("//meta[translate(@name, 'ROBTS', 'robts')='robots']/@content")).lower()
    if "nofollow" in robots or "none" in robots:
        return []
    base = page.url
    for href in tree.xpath("//base/@href")[:1]:
        base = urljoin(page.url, href.strip())
    links: dict[str, None] = {}
    for anchor in tree.xpath("//a[@href]"):
        if "nofollow" in (anchor.get("rel") or "").lower():
            continue
        href = anchor.get("href", "").strip()
        if not href or href.startswith(("#", "mailto:", "tel:", "javascript:")):
            continue
        absolute = urljoin(base, href)
        if urlsplit(absolute).scheme not in ("http", "https"):
            continue
        if PurePosixPath(urlsplit(absolute).path.lower()).suffix in SKIPPED_SUFFIXES:
            continue
        links[normalise_url(absolute)] = None
    return list(links)
