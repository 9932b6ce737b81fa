"""A website source: crawled from its start page through same-host links, breadth first, within its limits, and
re-synced change-aware. The site is a real HTTP server on 127.0.0.1 with no sitemap; ingestion is real."""

import pytest

from knowledge.crawl import CrawlScope, SiteCrawler, normalise_url
from knowledge.models import Chunk, Document, Source
from knowledge.services import knowledge_base_create, source_add_site, source_ingest
from knowledge.web import CrawlSession, FetchLimits
from tests.knowledge.local_site import LocalSite

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def site():
    served = LocalSite().start()
    yield served
    served.stop()


@pytest.fixture
def knowledge_base(db):
    return knowledge_base_create(name="Acme site")


def crawled_paths(site: LocalSite, **scope) -> list[str]:
    with CrawlSession(start_url=site.url, limits=FetchLimits(allow_private=True, timeout_seconds=5)) as crawl:
        crawler = SiteCrawler(
            crawl=crawl, start_url=site.url, scope=CrawlScope(**scope), max_pages=scope.pop("max_pages", 50)
        )
        return [page.url.removeprefix(site.url) for page in crawler.pages() if page.index]


def test_it_follows_same_host_links_breadth_first_and_obeys_robots_txt(site):
    assert crawled_paths(site) == ["/", "/shipping", "/returns", "/shipping/norway", "/returns/form"]
    # Never fetched: the page robots.txt disallows, the other host, the image.
    assert "/private/staff" not in site.page_requests() and "/logo.png" not in site.page_requests()


def test_it_stops_at_the_depth_and_keeps_to_the_patterns(site):
    assert crawled_paths(site, max_depth=1) == ["/", "/shipping", "/returns"]
    assert crawled_paths(site, exclude=("/returns*",)) == ["/", "/shipping", "/shipping/norway"]
    # The start page is read for its links, but only matching pages are kept.
    assert crawled_paths(site, include=("/shipping*",)) == ["/shipping", "/shipping/norway"]


def test_it_stops_at_the_page_budget(site):
    with CrawlSession(start_url=site.url, limits=FetchLimits(allow_private=True)) as crawl:
        pages = list(SiteCrawler(crawl=crawl, start_url=site.url, scope=CrawlScope(), max_pages=2).pages())
    assert [page.url.removeprefix(site.url) for page in pages] == ["/", "/shipping"]


def test_urls_are_spelt_one_way():
    assert normalise_url("HTTP://Example.COM#top") == "http://example.com/"
    assert normalise_url("https://example.com/a?b=1#c") == "https://example.com/a?b=1"


def test_a_site_is_ingested_and_resynced_change_aware(knowledge_base, site):
    source = source_add_site(knowledge_base=knowledge_base, url=site.url, allow_private_addresses=True)

    first = source_ingest(source=source)
    source.refresh_from_db()
    assert (first.documents, first.indexed, first.failures) == (5, 5, [])
    assert (source.status, source.documents_done, source.documents_total) == ("ready", 5, 5)
    assert source.last_synced_at is not None
    assert set(Document.objects.values_list("title", flat=True)) == {
        "Acme home", "Shipping", "Norway", "Returns", "Return form",
    }  # fmt: skip
    assert Chunk.objects.filter(text__contains="five working days").exists()
    assert not Chunk.objects.filter(text__contains="4711").exists()

    # Nothing changed: every page answers 304, nothing is embedded again, and the stored links still lead on.
    site.requests.clear()
    second = source_ingest(source=source)
    assert (second.unchanged, second.indexed, second.chunks_embedded) == (5, 0, 0)
    assert all("If-None-Match" in headers for path, headers in site.requests if path != "/robots.txt")

    # One page's text changed; another dropped its only link to a third, which is no longer reachable: the two
    # changed pages are indexed again, and the third leaves the knowledge base.
    site.pages["/shipping/norway"] = ("Norway", "Parcels to Norway now take two working days.", ["/"])
    site.pages["/returns"] = ("Returns", "Return any item within 30 days for a full refund.", [])
    third = source_ingest(source=source)
    assert (third.indexed, third.unchanged, third.removed) == (2, 2, 1)
    assert Chunk.objects.filter(text__contains="two working days").exists()
    assert not Document.objects.filter(title="Return form").exists()


def test_a_private_site_is_refused_with_the_whole_reason_unless_allowed(knowledge_base, site):
    source = source_add_site(knowledge_base=knowledge_base, url=site.url)

    source_ingest(source=source)

    source.refresh_from_db()
    assert source.status == Source.Status.FAILED
    assert "a private or internal address; refused to protect the internal network" in source.error
    assert site.page_requests() == [] and not Document.objects.filter(source=source, status="indexed").exists()
