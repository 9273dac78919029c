# Token windows (search.services.windows): a chunk longer than a space's model reads
# has one vector row per window. Existing rows are window 0. The per-space partial
# HNSW indexes are untouched (they do not involve the window).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('documents', '0007_code_unique_per_visible_scope'),
        ('search', '0012_space_migration_comparison_and_retirement'),
    ]

    operations = [
        migrations.AddField(
            model_name='chunkembedding',
            name='window',
            field=models.PositiveSmallIntegerField(db_default=0, default=0),
        ),
        # the new unique index first: the table is never without one
        migrations.AddConstraint(
            model_name='chunkembedding',
            constraint=models.UniqueConstraint(fields=('space', 'chunk', 'window'),
                                               name='one_vector_per_chunk_window_and_space'),
        ),
        migrations.RemoveConstraint(
            model_name='chunkembedding',
            name='one_vector_per_chunk_and_space',
        ),
        migrations.AddIndex(
            model_name='chunkembedding',
            index=models.Index(condition=models.Q(('window__gt', 0)), fields=['space'],
                               name='search_embedding_windowed'),
        ),
    ]
