from django.db import migrations

# Markdown and HTML parse better since this migration (images, tags inside code spans, spaces where tags were
# removed, pages with a <figure>). Ingestion skips a document whose content did not change (and a web page the
# server says is not modified), so forgetting those documents' content hashes and HTTP validators makes their next
# ingestion (a scheduled re-sync, "Re-sync" in the dashboard, or `manage.py ingest` again) parse them anew. Chunks
# whose text did not change keep their vectors, so it costs little model time.
FORGET_CONTENT_HASHES = """
UPDATE knowledge_document SET content_hash = '', etag = '', last_modified = '', sitemap_lastmod = ''
WHERE url <> '' OR lower(filename) ~ '\\.(md|markdown|html?|xhtml)$'
"""


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0004_chunk_token_signature"),
    ]

    operations = [
        migrations.RunSQL(FORGET_CONTENT_HASHES, reverse_sql=migrations.RunSQL.noop),
    ]
