# A chunk's row keeps what it holds, up to 8,160 bytes (the most an 8 KB page takes): its embedding (1,540 bytes at
# 384 dimensions), its token signature (about 3 KB), its text and search vector. At PostgreSQL's default (2,032) the
# signature and the embedding went to the TOAST table whenever the text came with them: the embedding of 1,763 of
# the evaluation corpus's 1,773 chunks. Every similarity the search computes on a row (the exact vector half, the
# candidates' description) and every signature the second stage reads then went through the TOAST index.
# PostgreSQL's CPU per search on the evaluation corpus (bench/chunk_layout.py, docs/retrieval.md): 7.1-8.3 ms at the
# default; 4.5-4.6 (exact) and 3.6-3.9 (through HNSW) ms at 8,160; 4.6-4.8 at 4,080, which still moved most
# signatures out. The table takes no more room: what left the row at the default went to the TOAST table.
#
# Rows written before this migration keep their layout until they are written again (re-ingested), or until
# `VACUUM FULL knowledge_chunk` rewrites the table (it locks the table, and rebuilds its indexes, while it runs).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("knowledge", "0007_search_config_per_knowledge_base"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE knowledge_chunk SET (toast_tuple_target = 8160)",
            reverse_sql="ALTER TABLE knowledge_chunk RESET (toast_tuple_target)",
        ),
    ]
