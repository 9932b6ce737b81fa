"""`manage.py ingest` with .zip archives: unpacked as the dashboard and the API unpack uploads (the same limits and
bomb guards), each document inside ingested now as a source of its own, a line for each member left out."""

import io
import zipfile

import pytest
from django.core.management import CommandError, call_command

from knowledge.models import Document, Source


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


HANDBOOK = {
    "guides/shipping.md": b"# Shipping\n\nWe ship to every country in the EU within three days.",
    "guides/returns.txt": b"Returns are free within 30 days of delivery.",
    "logo.png": b"\x89PNG....",
}


def ingest(*args: str) -> str:
    out = io.StringIO()
    call_command("ingest", "--bot", "acme", *args, stdout=out)
    return out.getvalue()


def test_it_ingests_each_document_of_a_zip_and_says_what_it_left_out(bot, tmp_path):
    archive = tmp_path / "handbook.zip"
    archive.write_bytes(zipped(HANDBOOK))

    output = ingest(str(archive))

    titles = sorted(Source.objects.values_list("title", flat=True))
    assert titles == [f"{archive} › guides/returns.txt", f"{archive} › guides/shipping.md"]
    assert set(Source.objects.values_list("status", flat=True)) == {"ready"}
    assert Document.objects.filter(status="indexed").count() == 2
    assert "“handbook.zip › logo.png” was left out: not a document" in output
    assert "failed 0" in output and "zip archive, which is not supported" not in output

    # The same archive again updates its documents in place, change-aware.
    again = ingest(str(archive))
    assert Source.objects.count() == 2
    assert "unchanged 2" in again


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(bot, tmp_path):
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zipped({"big.txt": b"0" * 5_000_000}))  # 5 MB of zeros pack to a few kilobytes
    with pytest.raises(CommandError, match="nothing left to ingest"):
        ingest(str(bomb))
    assert not Source.objects.exists()


def test_a_refused_archive_beside_a_document_still_ingests_the_document(bot, tmp_path):
    (tmp_path / "faq.md").write_text("# FAQ\n\nWe answer within a day.")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")

    output = ingest(str(tmp_path / "faq.md"), str(tmp_path / "broken.zip"))

    assert "“broken.zip” is not a readable zip archive" in output
    assert list(Source.objects.values_list("title", flat=True)) == [str(tmp_path / "faq.md")]
    assert "indexed 1" in output
