"""The keyword index's change log (issue 12; search/keyword_models.py).

Triggers append one row per changed document IN THE SAME TRANSACTION as the
change, on every write path (ORM save, queryset.update(), m2m add/remove/clear,
admin actions, raw SQL, COPY): chunks inserted, updated or deleted; a document
deleted; a document's access key (level, owner), status or facets (title, type,
language, effective date) changed; its departments or tags changed; a tag
moved under another parent (its documents' tag ancestors change). Statement
triggers with transition tables: a bulk update writes one row per document,
not one per chunk. TRUNCATE is not logged (nothing in the portal truncates
documents; `keyword_index rebuild` after one)."""

from django.db import migrations, models


CREATE = """
ALTER TABLE search_keywordchange
    ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text::bigint),
    ALTER COLUMN created_at SET DEFAULT now();

CREATE OR REPLACE FUNCTION search_keyword_log_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_keywordchange (document_id, reason)
    SELECT DISTINCT document_id, TG_ARGV[0] FROM changed_rows;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION search_keyword_log_documents() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO search_keywordchange (document_id, reason) SELECT o.id, 'deleted' FROM old_docs o;
    ELSE
        INSERT INTO search_keywordchange (document_id, reason)
        SELECT n.id, 'document' FROM new_docs n JOIN old_docs o ON o.id = n.id
         WHERE (o.access_level, o.owner_id, o.status, o.title, o.document_type, o.language, o.effective_date)
               IS DISTINCT FROM
               (n.access_level, n.owner_id, n.status, n.title, n.document_type, n.language, n.effective_date);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION search_keyword_log_tag_moves() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_keywordchange (document_id, reason)
    WITH RECURSIVE moved(id) AS (
        SELECT n.id FROM new_tags n JOIN old_tags o ON o.id = n.id WHERE n.parent_id IS DISTINCT FROM o.parent_id
        UNION SELECT t.id FROM documents_tag t JOIN moved m ON t.parent_id = m.id)
    SELECT DISTINCT dt.document_id, 'tags' FROM documents_document_tags dt WHERE dt.tag_id IN (SELECT id FROM moved);
    RETURN NULL;
END $$;
"""

TRIGGERS = [  # (name, table, event, transition, function, argument)
    ("search_kw_chunks_inserted", "documents_chunk", "INSERT", "NEW TABLE AS changed_rows", "rows", "chunks"),
    ("search_kw_chunks_updated", "documents_chunk", "UPDATE", "NEW TABLE AS changed_rows", "rows", "chunks"),
    ("search_kw_chunks_moved", "documents_chunk", "UPDATE", "OLD TABLE AS changed_rows", "rows", "chunks"),
    ("search_kw_chunks_deleted", "documents_chunk", "DELETE", "OLD TABLE AS changed_rows", "rows", "chunks"),
    ("search_kw_departments_added", "documents_document_departments", "INSERT", "NEW TABLE AS changed_rows",
     "rows", "departments"),
    ("search_kw_departments_removed", "documents_document_departments", "DELETE", "OLD TABLE AS changed_rows",
     "rows", "departments"),
    ("search_kw_departments_moved_to", "documents_document_departments", "UPDATE", "NEW TABLE AS changed_rows",
     "rows", "departments"),
    ("search_kw_departments_moved_from", "documents_document_departments", "UPDATE", "OLD TABLE AS changed_rows",
     "rows", "departments"),
    ("search_kw_tags_added", "documents_document_tags", "INSERT", "NEW TABLE AS changed_rows", "rows", "tags"),
    ("search_kw_tags_removed", "documents_document_tags", "DELETE", "OLD TABLE AS changed_rows", "rows", "tags"),
    ("search_kw_tags_moved_to", "documents_document_tags", "UPDATE", "NEW TABLE AS changed_rows", "rows", "tags"),
    ("search_kw_tags_moved_from", "documents_document_tags", "UPDATE", "OLD TABLE AS changed_rows", "rows", "tags"),
    ("search_kw_document_changed", "documents_document", "UPDATE", "OLD TABLE AS old_docs NEW TABLE AS new_docs",
     "documents", None),
    ("search_kw_document_deleted", "documents_document", "DELETE", "OLD TABLE AS old_docs", "documents", None),
    ("search_kw_tag_moved", "documents_tag", "UPDATE", "OLD TABLE AS old_tags NEW TABLE AS new_tags",
     "tag_moves", None),
]

CREATE_TRIGGERS = "\n".join(
    f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} FOR EACH STATEMENT "
    f"EXECUTE FUNCTION search_keyword_log_{function}({repr(argument) if argument else ''});"
    for name, table, event, transition, function, argument in TRIGGERS)

DROP = "\n".join(f"DROP TRIGGER IF EXISTS {name} ON {table};" for name, table, *_ in TRIGGERS) + """
DROP FUNCTION IF EXISTS search_keyword_log_rows();
DROP FUNCTION IF EXISTS search_keyword_log_documents();
DROP FUNCTION IF EXISTS search_keyword_log_tag_moves();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('documents', '0007_code_unique_per_visible_scope'),
        ('search', '0014_space_vector_gap_floor'),
    ]

    operations = [
        migrations.CreateModel(
            name='KeywordIndexCopy',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('copy_id', models.CharField(max_length=100, unique=True, verbose_name='copy')),
                ('host', models.CharField(max_length=200, verbose_name='machine')),
                ('analyzer', models.CharField(max_length=32, verbose_name='analyzer version')),
                ('path', models.CharField(max_length=500, verbose_name='folder')),
                ('cursor_xid', models.BigIntegerField(default=0)),
                ('cursor_id', models.BigIntegerField(default=0)),
                ('chunks', models.PositiveBigIntegerField(default=0, verbose_name='chunks')),
                ('built_at', models.DateTimeField(blank=True, null=True, verbose_name='built')),
                ('applied_at', models.DateTimeField(blank=True, null=True, verbose_name='last applied')),
            ],
            options={
                'verbose_name': 'keyword index copy',
                'verbose_name_plural': 'keyword index copies',
                'ordering': ['host', 'copy_id'],
            },
        ),
        migrations.CreateModel(
            name='KeywordChange',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('xid', models.BigIntegerField(editable=False, verbose_name='transaction')),
                ('document_id', models.BigIntegerField(verbose_name='document')),
                ('reason', models.CharField(max_length=16, verbose_name='reason')),
                ('created_at', models.DateTimeField(editable=False, verbose_name='recorded')),
            ],
            options={
                'verbose_name': 'keyword index change',
                'verbose_name_plural': 'keyword index changes',
                'indexes': [models.Index(fields=['xid', 'id'], name='search_kwchange_order')],
            },
        ),
        migrations.RunSQL(CREATE + CREATE_TRIGGERS, DROP),
    ]
