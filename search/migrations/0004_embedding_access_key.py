"""The access key on every vector row: the document's access level, owner and
department ids, so the HNSW scan applies the access rule on the row it reads
(documents.selectors.access_key_condition) instead of a semi-join against the
visible documents per row — at 1M chunks that join made a 90%-hidden search
86–140 ms (docs/benchmarks.md).

Triggers keep the copy right on EVERY write path, in the same transaction:
ORM saves, queryset.update() (admin bulk actions), m2m add/remove/clear, raw
SQL, COPY. Search still applies the access function to the rows it returns, so
a key can never widen what a user sees."""
import django.contrib.postgres.fields
from django.db import migrations, models

CREATE = """
-- database defaults too: raw INSERTs and COPY name only the vector's own columns
ALTER TABLE search_chunkembedding ALTER COLUMN doc_access_level SET DEFAULT 3,
                                  ALTER COLUMN doc_department_ids SET DEFAULT '{}';
CREATE OR REPLACE FUNCTION search_embedding_fill_access_key() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    level smallint;
    owner bigint;
    depts bigint[];
BEGIN
    -- FOR SHARE: a concurrent change of the document's access waits for this
    -- transaction (or this read waits for it and sees its committed result), so
    -- neither side can miss the other's rows.
    SELECT d.access_level, d.owner_id INTO level, owner
      FROM documents_document d WHERE d.id = NEW.document_id FOR SHARE;
    IF FOUND THEN  -- else the foreign key refuses the row at commit
        -- a new statement, so a new snapshot: links committed while we waited count
        SELECT coalesce(array_agg(dd.department_id ORDER BY dd.department_id), '{}') INTO depts
          FROM documents_document_departments dd WHERE dd.document_id = NEW.document_id;
        NEW.doc_access_level := level;
        NEW.doc_owner_id := owner;
        NEW.doc_department_ids := depts;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER search_embedding_fill_access_key
    BEFORE INSERT OR UPDATE OF document_id ON search_chunkembedding
    FOR EACH ROW EXECUTE FUNCTION search_embedding_fill_access_key();

CREATE OR REPLACE FUNCTION documents_document_access_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_chunkembedding SET doc_access_level = NEW.access_level, doc_owner_id = NEW.owner_id
     WHERE document_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER documents_document_access_changed
    AFTER UPDATE OF access_level, owner_id ON documents_document
    FOR EACH ROW WHEN (OLD.access_level IS DISTINCT FROM NEW.access_level
                       OR OLD.owner_id IS DISTINCT FROM NEW.owner_id)
    EXECUTE FUNCTION documents_document_access_changed();

CREATE OR REPLACE FUNCTION documents_departments_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- wait for transactions writing these documents' vectors (they hold FOR
    -- SHARE), so the UPDATE below, a new statement, sees their rows
    PERFORM 1 FROM documents_document d
     WHERE d.id IN (SELECT document_id FROM changed_links) FOR NO KEY UPDATE;
    UPDATE search_chunkembedding ce
       SET doc_department_ids = coalesce((SELECT array_agg(dd.department_id ORDER BY dd.department_id)
                                            FROM documents_document_departments dd
                                           WHERE dd.document_id = ce.document_id), '{}')
     WHERE ce.document_id IN (SELECT document_id FROM changed_links);
    RETURN NULL;
END $$;
CREATE TRIGGER documents_departments_added AFTER INSERT ON documents_document_departments
    REFERENCING NEW TABLE AS changed_links
    FOR EACH STATEMENT EXECUTE FUNCTION documents_departments_changed();
CREATE TRIGGER documents_departments_removed AFTER DELETE ON documents_document_departments
    REFERENCING OLD TABLE AS changed_links
    FOR EACH STATEMENT EXECUTE FUNCTION documents_departments_changed();
CREATE TRIGGER documents_departments_moved_from AFTER UPDATE ON documents_document_departments
    REFERENCING OLD TABLE AS changed_links
    FOR EACH STATEMENT EXECUTE FUNCTION documents_departments_changed();
CREATE TRIGGER documents_departments_moved_to AFTER UPDATE ON documents_document_departments
    REFERENCING NEW TABLE AS changed_links
    FOR EACH STATEMENT EXECUTE FUNCTION documents_departments_changed();

"""

BACKFILL = """
UPDATE search_chunkembedding ce
   SET doc_access_level = d.access_level, doc_owner_id = d.owner_id,
       doc_department_ids = coalesce((SELECT array_agg(dd.department_id ORDER BY dd.department_id)
                                        FROM documents_document_departments dd
                                       WHERE dd.document_id = d.id), '{}')
  FROM documents_document d WHERE d.id = ce.document_id
"""


def backfill_keys(apps, schema_editor):
    """Vectors written before this migration get their key. Updating a row adds a
    new entry to its space's HNSW index (~1 ms each at 100k rows), so the
    indexes are dropped first and rebuilt after: a rebuild is far cheaper."""
    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM search_chunkembedding")
        if not cur.fetchone()[0]:
            return
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'search_chunkembedding' "
                    "AND indexname LIKE 'search_chunkembedding_hnsw_%%'")
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute(BACKFILL)
        for _, definition in indexes:
            cur.execute(definition)


DROP = """
DROP TRIGGER IF EXISTS search_embedding_fill_access_key ON search_chunkembedding;
DROP FUNCTION IF EXISTS search_embedding_fill_access_key();
DROP TRIGGER IF EXISTS documents_document_access_changed ON documents_document;
DROP FUNCTION IF EXISTS documents_document_access_changed();
DROP TRIGGER IF EXISTS documents_departments_added ON documents_document_departments;
DROP TRIGGER IF EXISTS documents_departments_removed ON documents_document_departments;
DROP TRIGGER IF EXISTS documents_departments_moved_from ON documents_document_departments;
DROP TRIGGER IF EXISTS documents_departments_moved_to ON documents_document_departments;
DROP FUNCTION IF EXISTS documents_departments_changed();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("documents", "0002_initial"),
        ("search", "0003_evaluation"),
    ]

    operations = [
        migrations.AddField(
            model_name="chunkembedding", name="doc_access_level",
            field=models.PositiveSmallIntegerField(default=3, editable=False)),
        migrations.AddField(
            model_name="chunkembedding", name="doc_owner_id",
            field=models.BigIntegerField(editable=False, null=True)),
        migrations.AddField(
            model_name="chunkembedding", name="doc_department_ids",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.BigIntegerField(), default=list, editable=False, size=None)),
        migrations.RunSQL(CREATE, DROP),
        migrations.RunPython(backfill_keys, migrations.RunPython.noop),
    ]
