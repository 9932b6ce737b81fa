"""Knowledge in bulk from the dashboard: several files in one upload, .zip archives (with a message for each member
left out), website sources with their limits, private addresses refused with the whole reason (and allowed per
source), progress pushed over the dashboard socket, and website sources in bot files and `manage.py ingest`."""

import io
import json
import zipfile

import pytest
from channels.db import database_sync_to_async
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from chatbot.bots import botfiles
from chatbot.bots.progress import source_progress_publish
from chatbot.models import Bot
from knowledge.archives import archive_documents
from knowledge.models import Document, Source
from knowledge.parsing import ParseLimits
from knowledge.services import source_add_site
from tests.knowledge.local_site import LocalSite

from .conftest import logged_in, staff_socket


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(client, bot, *files, **fields):
    url = reverse("dashboard:bot-knowledge", args=[bot.slug])
    return client.post(url, {"kind": "file", "file": list(files), **fields})


def flashes(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_it_adds_several_files_in_one_upload(admin, bot, django_capture_on_commit_callbacks):
    files = [
        SimpleUploadedFile("shipping.md", b"# Shipping\n\nWe ship in three days."),
        SimpleUploadedFile("returns.txt", b"Returns are free within 30 days."),
    ]
    with django_capture_on_commit_callbacks() as queued:
        response = upload(logged_in(admin), bot, *files)
    assert response.status_code == 302
    assert "2 document(s) added; ingestion has started." in flashes(response)
    assert sorted(Source.objects.values_list("title", flat=True)) == ["returns.txt", "shipping.md"]
    assert len(queued) == 2


def test_it_unpacks_a_zip_and_says_why_each_member_was_left_out(admin, bot, django_capture_on_commit_callbacks):
    archive = zipped({
        "guides/shipping.md": b"# Shipping\n\nWe ship in three days.",
        "guides/returns.html": b"<html><body><h1>Returns</h1><p>Free within 30 days.</p></body></html>",
        "__MACOSX/guides/._shipping.md": b"junk",
        "logo.png": b"\x89PNG....",
        "nested.zip": zipped({"a.md": b"# A"}),
    })  # fmt: skip
    with django_capture_on_commit_callbacks() as queued:
        response = upload(logged_in(admin), bot, SimpleUploadedFile("help.zip", archive))
    assert sorted(Source.objects.values_list("title", flat=True)) == [
        "help.zip › guides/returns.html", "help.zip › guides/shipping.md",
    ]  # fmt: skip
    assert len(queued) == 2
    messages = flashes(response)
    assert any("“help.zip › logo.png” was left out: not a document" in m for m in messages)
    assert any("“help.zip › nested.zip” was left out: an archive inside the archive" in m for m in messages)
    assert not any("__MACOSX" in m for m in messages)

    # The members are ingested as documents of their own, titled by their path.
    for source in Source.objects.all():
        from knowledge.services import source_ingest

        source_ingest(source=source)
    assert Document.objects.filter(status="indexed").count() == 2

    # The same archive again replaces its members instead of adding them twice.
    with django_capture_on_commit_callbacks():
        upload(logged_in(admin), bot, SimpleUploadedFile("help.zip", archive))
    assert Source.objects.count() == 2


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(admin, bot):
    bomb = zipped({"big.txt": b"0" * 5_000_000})  # 5 MB of zeros pack to a few kilobytes
    response = upload(logged_in(admin), bot, SimpleUploadedFile("bomb.zip", bomb))
    assert response.status_code == 200  # the form again, nothing added
    assert any("expands to 5,000,000 bytes when unpacked and was refused as unsafe" in m for m in flashes(response))
    assert not Source.objects.exists()


def test_an_archive_is_held_to_the_same_limits_as_one_document():
    limits = ParseLimits(max_bytes=1000)
    contents = archive_documents(data=zipped({"a.md": b"# A\n" + b"x" * 900, "b.md": b"y" * 999}), filename="z.zip")
    assert [member.path for member in contents.documents] == ["a.md", "b.md"]
    many = zipped({f"{n}.md": b"# x" for n in range(12)})
    with pytest.raises(ValueError, match="holds 12 files"):
        archive_documents(data=many, filename="many.zip", limits=ParseLimits(max_docx_entries=10))
    with pytest.raises(ValueError, match="not a readable zip archive"):
        archive_documents(data=b"PK\x03\x04 broken", filename="broken.zip", limits=limits)


def test_an_admin_adds_a_website_with_its_limits(admin, bot, django_capture_on_commit_callbacks):
    fields = {
        "kind": "site", "url": "https://www.acme.test/", "max_pages": "50", "max_depth": "2",
        "include_patterns": "/help/*\n/docs/*", "exclude_patterns": "/blog/*", "resync_every_hours": "24",
    }  # fmt: skip
    with django_capture_on_commit_callbacks() as queued:
        response = logged_in(admin).post(reverse("dashboard:bot-knowledge", args=["acme"]), fields)
    assert "Website added; the crawl has started." in flashes(response)
    source = Source.objects.get()
    assert (source.kind, source.max_pages, source.max_depth, source.resync_every_hours) == ("site", 50, 2, 24)
    assert (source.include_patterns, source.exclude_patterns) == (["/help/*", "/docs/*"], ["/blog/*"])
    assert len(queued) == 1


def test_a_private_address_is_refused_with_the_whole_reason_and_how_to_allow_it(admin, bot):
    client = logged_in(admin)
    response = client.post(
        reverse("dashboard:bot-knowledge", args=["acme"]), {"kind": "url", "url": "http://127.0.0.1:9/"}
    )
    assert response.status_code == 200 and not Source.objects.exists()
    assert not any("ingestion has started" in m for m in flashes(response))
    page = response.content.decode()
    assert (
        "127.0.0.1 resolves to 127.0.0.1, a private or internal address; refused to protect the internal network."
        in page
    )
    assert "tick “Allow private network addresses”" in page

    fields = {"kind": "url", "url": "http://127.0.0.1:9/", "allow_private_addresses": "on"}
    client.post(reverse("dashboard:bot-knowledge", args=["acme"]), fields)
    assert Source.objects.get().allow_private_addresses


def test_a_source_that_failed_on_a_private_address_shows_why_and_offers_the_flag(
    admin, bot, django_capture_on_commit_callbacks
):
    source = source_add_site(knowledge_base=bot.knowledge_base, url="http://127.0.0.1:9/")
    reason = "127.0.0.1 resolves to 127.0.0.1, a private or internal address; refused to protect the internal network."
    Source.objects.filter(id=source.id).update(status="failed", error=reason)
    client = logged_in(admin)
    page = client.get(reverse("dashboard:bot-knowledge", args=["acme"])).content.decode()
    assert reason in page  # whole, not cut at 80 characters
    assert "Allow private addresses and re-sync" in page
    with django_capture_on_commit_callbacks() as queued:
        client.post(reverse("dashboard:source-allow-private", args=["acme", source.id]))
    source.refresh_from_db()
    assert source.allow_private_addresses and source.status == "pending" and len(queued) == 1


@pytest.mark.django_db(transaction=True)
async def test_ingestion_progress_is_pushed_to_the_administrators_dashboards(admin, agent, bot):
    admin_socket, agent_socket = await staff_socket(admin), await staff_socket(agent)
    for socket in (admin_socket, agent_socket):
        assert (await socket.connect())[0]
    source = await database_sync_to_async(source_add_site)(knowledge_base=bot.knowledge_base, url="https://a.test/")
    source.status, source.documents_done, source.documents_total = "running", 3, 7

    await database_sync_to_async(source_progress_publish)(source)

    frame = await admin_socket.receive_json_from(timeout=5)
    assert frame["type"] == "source"
    assert {k: frame["source"][k] for k in ("id", "status", "done", "total")} == {
        "id": source.id, "status": "running", "done": 3, "total": 7,
    }  # fmt: skip
    assert await agent_socket.receive_nothing(timeout=0.3)  # the knowledge pages are for administrators
    for socket in (admin_socket, agent_socket):
        await socket.disconnect()


def test_a_website_source_travels_in_bot_files(bot, django_capture_on_commit_callbacks):
    source_add_site(
        knowledge_base=bot.knowledge_base, url="https://www.acme.test/", max_pages=40, max_depth=2,
        include_patterns=["/help/*"], exclude_patterns=["/blog/*"], resync_every_hours=24,
    )  # fmt: skip
    document = botfiles.bot_config_export(bot=bot)
    assert document["sources"] == [{
        "kind": "site", "url": "https://www.acme.test/", "title": "", "resync_every_hours": 24, "max_pages": 40,
        "max_depth": 2, "include_patterns": ["/help/*"], "exclude_patterns": ["/blog/*"],
    }]  # fmt: skip
    document["bot"]["slug"] = "acme-copy"
    with django_capture_on_commit_callbacks():
        botfiles.bot_config_import(document=json.loads(json.dumps(document)))
    copy = Source.objects.get(knowledge_base=Bot.objects.get(slug="acme-copy").knowledge_base)
    assert (copy.kind, copy.max_pages, copy.max_depth, copy.include_patterns) == ("site", 40, 2, ["/help/*"])

    document["sources"][0]["max_depth"] = -1
    document["sources"][0]["include_patterns"] = "/help/*"
    with pytest.raises(botfiles.BotConfigError) as error:
        botfiles.bot_config_import(document=document)
    assert error.value.problems == [
        "sources[0].max_depth must be a whole number of at least 0.",
        'sources[0].include_patterns must be a list of path patterns such as "/docs/*".',
    ]


@pytest.mark.django_db(transaction=True)
def test_the_ingest_command_crawls_a_site(bot, capsys):
    site = LocalSite().start()
    try:
        call_command(
            "ingest", "--bot", "acme", "--crawl", site.url, "--max-pages", "3", "--max-depth", "1",
            "--allow-private-addresses",
        )  # fmt: skip
    finally:
        site.stop()
    source = Source.objects.get(kind="site")
    assert (source.url, source.max_pages, source.max_depth, source.status) == (site.url, 3, 1, "ready")
    assert Document.objects.filter(source=source, status="indexed").count() == 3
    assert "documents: 3 (indexed 3" in capsys.readouterr().out
    with pytest.raises(CommandError, match="give files, folders or URLs"):
        call_command("ingest", "--bot", "acme")
