# The term table loses its index on the knowledge base alone: `term_unique_lexeme` (knowledge base, lexeme) starts
# with the same column and serves every lookup by knowledge base. While the table's statistics did not yet know a
# knowledge base (after its ingestion, until autovacuum analysed the table), the planner chose the narrower index
# for a question's lexemes, read every term of the knowledge base and filtered them (models.Term).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('knowledge', '0008_chunk_rows_kept_whole'),
    ]

    operations = [
        migrations.AlterField(
            model_name='term',
            name='knowledge_base',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='knowledge.knowledgebase'),
        ),
    ]
