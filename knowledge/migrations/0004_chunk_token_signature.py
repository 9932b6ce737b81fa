from django.db import migrations, models

# Chunks indexed before this migration have no token signature, and ingestion skips a document whose content did
# not change (and a web page the server says is not modified). Forgetting the content hashes and HTTP validators
# makes the next ingestion of every source (a scheduled re-sync, "Re-sync" in the dashboard, or `manage.py ingest`
# again) embed its chunks anew, with signatures. Until then search ranks those chunks as before.
FORGET_CONTENT_HASHES = (
    "UPDATE knowledge_document SET content_hash = '', etag = '', last_modified = '', sitemap_lastmod = ''"
)


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0003_chunk_terms"),
    ]

    operations = [
        migrations.AddField(
            model_name="chunk",
            name="token_signature",
            field=models.BinaryField(editable=False, null=True),
        ),
        migrations.RunSQL(FORGET_CONTENT_HASHES, reverse_sql=migrations.RunSQL.noop),
    ]
