"""Keyword index: the folded form of each exact term (for "did you mean"), and a
statement trigger that keeps term df and the corpus statistics right whenever
postings are deleted — by re-indexing, or by a document's cascade delete, which
Django issues as a plain DELETE on the postings.

The trigger takes the same transaction-level advisory lock as the indexer
(search.services.keyword_index.LOCK_KEY) so concurrent indexers and deletes
update df rows one at a time instead of deadlocking."""
from django.db import migrations, models

LOCK_KEY = 7_236_501_100  # = keyword_index.LOCK_KEY

CREATE_TRIGGER = f"""
CREATE OR REPLACE FUNCTION search_keywordposting_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_KEY});
    UPDATE search_keywordterm t SET df = GREATEST(t.df - d.n, 0)
      FROM (SELECT term_id, count(*) AS n FROM old_postings GROUP BY term_id) d
     WHERE t.id = d.term_id;
    -- one '#len' posting per chunk carries the chunk's length as its weight
    UPDATE search_keywordstats s
       SET chunk_count = GREATEST(s.chunk_count - l.n, 0),
           total_length = GREATEST(s.total_length - l.total, 0)
      FROM (SELECT count(*) AS n, coalesce(sum(o.weight), 0)::bigint AS total
              FROM old_postings o JOIN search_keywordterm t ON t.id = o.term_id
             WHERE t.term = '#len') l
     WHERE l.n > 0;
    RETURN NULL;
END $$;
CREATE TRIGGER search_keywordposting_deleted AFTER DELETE ON search_keywordposting
    REFERENCING OLD TABLE AS old_postings
    FOR EACH STATEMENT EXECUTE FUNCTION search_keywordposting_deleted();
"""

DROP_TRIGGER = """
DROP TRIGGER IF EXISTS search_keywordposting_deleted ON search_keywordposting;
DROP FUNCTION IF EXISTS search_keywordposting_deleted();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='keywordterm',
            name='folded',
            field=models.CharField(blank=True, help_text="accent-folded form of an exact term (null for '~' and reserved terms): finds the accented forms of a query typed without accents", max_length=100, null=True),
        ),
        migrations.AddIndex(
            model_name='keywordterm',
            index=models.Index(condition=models.Q(('folded__isnull', False)), fields=['folded'], name='search_term_folded'),
        ),
        migrations.RunSQL(CREATE_TRIGGER, DROP_TRIGGER),
    ]
