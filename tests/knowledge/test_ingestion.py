"""Ingestion into the real database with the real embedding model: sources become documents and chunks."""

import hashlib
import importlib
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from knowledge.embeddings import EMBEDDING_DIMENSIONS
from knowledge.models import Chunk, Document, Source
from knowledge.services import (
    document_index,
    knowledge_base_create,
    source_add_faq,
    source_add_file,
    source_add_url,
    source_delete,
    source_ingest,
    sources_due_for_resync,
)
from tests.knowledge.documents import make_pdf

pytestmark = pytest.mark.django_db(transaction=True)

GUIDE = b"""# Shipping guide

## Delivery times

Orders placed before 2 pm ship the same day. Standard delivery takes three to five working days.

## Returns

You can return any item within 30 days for a full refund. Print the prepaid label from your account page.
"""


@pytest.fixture
def knowledge_base(db):
    return knowledge_base_create(name="Acme docs")


def test_a_file_becomes_an_indexed_document_with_embedded_chunks(knowledge_base):
    source = source_add_file(knowledge_base=knowledge_base, filename="shipping.md", data=GUIDE)

    report = source_ingest(source=source)

    assert (report.documents, report.indexed, report.failures) == (1, 1, [])
    source.refresh_from_db()
    assert (source.status, source.documents_done, source.documents_total) == ("ready", 1, 1)
    document = Document.objects.get(source=source)
    assert document.title == "Shipping guide"
    assert document.status == "indexed"
    assert document.content_hash == hashlib.sha256(GUIDE).hexdigest()
    chunks = list(Chunk.objects.filter(document=document).order_by("position"))
    assert document.chunk_count == len(chunks) == report.chunks >= 2
    assert {tuple(chunk.heading_path) for chunk in chunks} == {("Delivery times",), ("Returns",)}
    assert all(len(chunk.embedding) == EMBEDDING_DIMENSIONS for chunk in chunks)
    assert chunks[0].heading_text == "Shipping guide › Delivery times"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM knowledge_chunk WHERE document_id = %s"
            " AND search_vector @@ websearch_to_tsquery('english', 'refunds')",
            [document.id],
        )
        assert cursor.fetchone()[0] == 1


def test_an_unchanged_document_is_skipped_and_keeps_its_chunks(knowledge_base):
    source = source_add_file(knowledge_base=knowledge_base, filename="shipping.md", data=GUIDE)
    source_ingest(source=source)
    before = list(Chunk.objects.values_list("id", flat=True).order_by("id"))

    report = source_ingest(source=source)

    assert (report.unchanged, report.indexed, report.chunks_embedded) == (1, 0, 0)
    assert list(Chunk.objects.values_list("id", flat=True).order_by("id")) == before


def test_a_changed_document_replaces_its_chunks_and_embeds_only_the_changed_ones(knowledge_base):
    source = source_add_file(knowledge_base=knowledge_base, filename="shipping.md", data=GUIDE)
    source_ingest(source=source)
    changed = GUIDE.replace(b"within 30 days", b"within 60 days")

    report = document_index(source=source, key="file", filename="shipping.md", data=changed)

    assert report.indexed == 1
    assert report.chunks_embedded == 1 < report.chunks
    texts = list(Chunk.objects.filter(document__source=source).values_list("text", flat=True))
    assert any("within 60 days" in text for text in texts)
    assert not any("within 30 days" in text for text in texts)


def test_after_the_parsing_fixes_markdown_and_web_pages_are_parsed_again_at_their_next_ingestion(knowledge_base):
    reparse = importlib.import_module("knowledge.migrations.0005_reparse_markdown_and_html").FORGET_CONTENT_HASHES
    guide = source_add_file(knowledge_base=knowledge_base, filename="shipping.md", data=GUIDE)
    handbook = source_add_file(knowledge_base=knowledge_base, filename="handbook.pdf", data=make_pdf([["Holidays."]]))
    for source in (guide, handbook):
        source_ingest(source=source)
    # What the old parser kept of an illustration.
    Chunk.objects.filter(document__source=guide, position=0).update(text="![Our van](van.png)")
    with connection.cursor() as cursor:
        cursor.execute(reparse)

    assert Document.objects.get(source=handbook).content_hash
    assert source_ingest(source=handbook).unchanged == 1
    report = source_ingest(source=guide)
    assert (report.indexed, report.chunks_embedded) == (1, 0)  # parsed again; the chunks' vectors are reused
    assert not Chunk.objects.filter(document__source=guide, text__contains="![").exists()


def test_chunks_carry_token_signatures_and_a_chunk_without_one_is_embedded_again(knowledge_base):
    source = source_add_file(knowledge_base=knowledge_base, filename="shipping.md", data=GUIDE)
    source_ingest(source=source)
    chunks = Chunk.objects.filter(document__source=source).order_by("position")
    assert all(chunk.token_signature for chunk in chunks)
    # As after migration 0004: a chunk indexed before signatures existed, its document's content hash forgotten.
    Chunk.objects.filter(id=chunks[0].id).update(token_signature=None)
    Document.objects.filter(source=source).update(content_hash="")

    report = source_ingest(source=source)

    assert (report.indexed, report.chunks_embedded) == (1, 1)
    assert all(chunk.token_signature for chunk in Chunk.objects.filter(document__source=source))


def test_a_reader_never_sees_a_document_half_indexed(knowledge_base, settings):
    source = source_add_file(knowledge_base=knowledge_base, filename="shipping.md", data=GUIDE)
    source_ingest(source=source)
    document = Document.objects.get(source=source)
    old_count = document.chunk_count
    bigger = GUIDE + b"\n## Gift wrapping\n\n" + b"We wrap gifts in recycled paper. " * 200
    seen: set[int] = set()
    done = threading.Event()
    params = connection.get_connection_params()

    def read_counts():
        with psycopg.connect(**params, autocommit=True) as reader:
            while not done.is_set():
                seen.add(
                    reader.execute(
                        "SELECT count(*) FROM knowledge_chunk WHERE document_id = %s", [document.id]
                    ).fetchone()[0]
                )

    reader = threading.Thread(target=read_counts)
    reader.start()
    try:
        document_index(source=source, key="file", filename="shipping.md", data=bigger)
        time.sleep(0.05)
    finally:
        done.set()
        reader.join()

    new_count = Chunk.objects.filter(document=document).count()
    assert new_count > old_count
    assert seen <= {old_count, new_count}


def test_a_corrupt_file_fails_its_document_with_a_clear_error_and_the_rest_goes_on(knowledge_base):
    broken = source_add_file(knowledge_base=knowledge_base, filename="broken.pdf", data=make_pdf([["Hello"]])[:200])
    fine = source_add_file(knowledge_base=knowledge_base, filename="shipping.md", data=GUIDE)

    broken_report = source_ingest(source=broken)
    fine_report = source_ingest(source=fine)

    assert len(broken_report.failures) == 1
    failed = Document.objects.get(source=broken)
    assert failed.status == "failed"
    assert "broken.pdf" in failed.error
    broken.refresh_from_db()
    assert broken.status == "failed" and broken.error
    assert fine_report.indexed == 1


def test_deleting_a_source_deletes_its_documents_and_chunks(knowledge_base):
    source = source_add_file(knowledge_base=knowledge_base, filename="shipping.md", data=GUIDE)
    source_ingest(source=source)
    assert Chunk.objects.count() > 0

    source_delete(source=source)

    assert Document.objects.count() == 0
    assert Chunk.objects.count() == 0


def test_a_faq_entry_is_searchable_as_a_document_of_its_own(knowledge_base):
    source = source_add_faq(knowledge_base=knowledge_base, question="Do you ship to Norway?", answer="Yes, in 4 days.")

    source_ingest(source=source)

    document = Document.objects.get(source=source)
    assert document.title == "Do you ship to Norway?"
    assert "Yes, in 4 days." in Chunk.objects.get(document=document).text


# --- web sources, served by a local HTTP server ---


class _Site:
    """A small website: pages with ETags, a sitemap with lastmod, and a request log."""

    def __init__(self):
        self.pages = {
            "/a": ("Alpha", "Alpha ships rockets to the moon every Tuesday."),
            "/b": ("Beta", "Beta sells umbrellas that never turn inside out."),
            "/c": ("Gamma", "Gamma repairs bicycles on weekends only."),
        }
        self.lastmod = {path: "2026-01-01" for path in self.pages}
        self.requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                site.requests.append(self.path)
                if self.path == "/robots.txt":
                    self._send(200, b"User-agent: *\nAllow: /\n", "text/plain")
                elif self.path == "/sitemap.xml":
                    urls = "".join(
                        f"<url><loc>{site.url}{path}</loc><lastmod>{site.lastmod[path]}</lastmod></url>"
                        for path in site.pages
                    )
                    body = f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
                    self._send(200, body.encode(), "application/xml")
                elif self.path in site.pages:
                    title, text = site.pages[self.path]
                    etag = '"' + hashlib.md5(text.encode()).hexdigest() + '"'  # noqa: S324 - an ETag, not security
                    if self.headers.get("If-None-Match") == etag:
                        self._send(304, b"", "text/html")
                        return
                    html = (
                        f"<html><head><title>{title}</title></head><body>"
                        '<nav><ul><li><a href="/">Home</a></li><li><a href="/about">About us</a></li></ul></nav>'
                        f"<main><article><h1>{title}</h1><p>{text} We are open every day of the year.</p>"
                        f"<p>{text}</p></article></main>"
                        "<footer><p>Copyright Acme 2026. All rights reserved.</p></footer></body></html>"
                    )
                    self._send(200, html.encode(), "text/html; charset=utf-8", etag=etag)
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, status, body, content_type, etag=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page_requests(self):
        return [path for path in self.requests if path in self.pages]


@pytest.fixture
def site():
    served = _Site()
    yield served
    served.server.shutdown()


def test_a_sitemap_is_crawled_and_resynced_change_aware(knowledge_base, site):
    source = source_add_url(
        knowledge_base=knowledge_base, url=f"{site.url}/sitemap.xml", sitemap=True, allow_private_addresses=True
    )

    first = source_ingest(source=source)
    assert (first.documents, first.indexed) == (3, 3)
    assert set(Document.objects.values_list("title", flat=True)) == {"Alpha", "Beta", "Gamma"}
    assert not Chunk.objects.filter(text__contains="About us").exists()
    assert not Chunk.objects.filter(text__contains="All rights reserved").exists()

    # Nothing changed: the sitemap's lastmod says so, and no page is fetched again.
    site.requests.clear()
    second = source_ingest(source=source)
    assert (second.unchanged, second.indexed) == (3, 0)
    assert site.page_requests() == []

    # lastmod moved but the page did not change: the ETag answers 304 and nothing is re-embedded.
    site.lastmod["/a"] = "2026-02-01"
    third = source_ingest(source=source)
    assert (third.unchanged, third.indexed, third.chunks_embedded) == (3, 0, 0)

    # A page changed; another left the sitemap.
    site.pages["/b"] = ("Beta", "Beta now sells raincoats as well as umbrellas.")
    site.lastmod["/b"] = "2026-03-01"
    del site.pages["/c"]
    fourth = source_ingest(source=source)
    assert (fourth.indexed, fourth.removed) == (1, 1)
    assert Chunk.objects.filter(text__contains="raincoats").exists()
    assert not Document.objects.filter(title="Gamma").exists()


def test_a_url_on_a_private_address_is_refused_unless_allowed(knowledge_base, site):
    source = source_add_url(knowledge_base=knowledge_base, url=f"{site.url}/a")

    report = source_ingest(source=source)

    assert report.indexed == 0 and len(report.failures) == 1
    assert site.page_requests() == []
    assert Document.objects.get(source=source).status == "failed"


def test_web_sources_come_due_for_resync_on_their_schedule(knowledge_base):
    due = source_add_url(knowledge_base=knowledge_base, url="https://a.test/", resync_every_hours=24)
    due.last_synced_at = timezone.now() - timedelta(hours=25)
    due.save()
    fresh = source_add_url(knowledge_base=knowledge_base, url="https://b.test/", resync_every_hours=24)
    fresh.last_synced_at = timezone.now() - timedelta(hours=1)
    fresh.save()
    never = source_add_url(knowledge_base=knowledge_base, url="https://c.test/")

    assert [source.id for source in sources_due_for_resync()] == [due.id]
    assert never.resync_every_hours is None
    assert Source.objects.count() == 3
