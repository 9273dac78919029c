"""Takes over the evaluation tables the search app created (search/0003):
the model state only, the database is not touched."""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('search', '0007_evaluation_moves_to_its_own_app'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.SeparateDatabaseAndState(state_operations=[
        migrations.CreateModel(
            name='EvaluationItem',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('query', models.CharField(max_length=1000, verbose_name='query')),
                ('positive', models.TextField(blank=True, help_text='Resolved to the chunk(s) containing it on import.', verbose_name='positive text')),
                ('relevant_chunks', django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), blank=True, default=list, size=None, verbose_name='relevant chunk ids')),
                ('relevant_documents', django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=64), blank=True, default=list, size=None, verbose_name='relevant document codes')),
                ('grades', models.JSONField(blank=True, default=dict, verbose_name='grades')),
                ('line', models.PositiveIntegerField(blank=True, null=True, verbose_name='source line')),
            ],
            options={
                'verbose_name': 'evaluation item',
                'db_table': 'search_evaluationitem',
                'ordering': ['evaluation_set_id', 'pk'],
            },
        ),
        migrations.CreateModel(
            name='EvaluationRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(blank=True, help_text='Runs started together share a report folder.', max_length=120, verbose_name='report name')),
                ('set_name', models.CharField(blank=True, max_length=120, verbose_name='set')),
                ('space_name', models.CharField(blank=True, max_length=120, verbose_name='space name')),
                ('model_path', models.CharField(blank=True, max_length=500, verbose_name='model')),
                ('mode', models.CharField(default='hybrid', max_length=16, verbose_name='mode')),
                ('depth', models.PositiveIntegerField(default=100, verbose_name='depth')),
                ('status', models.CharField(choices=[('queued', 'queued'), ('running', 'running'), ('done', 'done'), ('failed', 'failed')], db_index=True, default='queued', max_length=16, verbose_name='status')),
                ('progress', models.PositiveSmallIntegerField(default=0, verbose_name='progress %')),
                ('status_message', models.CharField(blank=True, max_length=200, verbose_name='step')),
                ('error', models.TextField(blank=True, verbose_name='error')),
                ('metrics', models.JSONField(blank=True, default=dict, verbose_name='metrics')),
                ('performance', models.JSONField(blank=True, default=dict, verbose_name='performance')),
                ('mrr_at_10', models.FloatField(blank=True, null=True, verbose_name='MRR@10')),
                ('hit_at_1', models.FloatField(blank=True, null=True, verbose_name='Hit@1')),
                ('query_count', models.PositiveIntegerField(default=0, verbose_name='queries')),
                ('skipped', models.PositiveIntegerField(default=0, verbose_name='skipped items')),
                ('report_dir', models.CharField(blank=True, max_length=500, verbose_name='report folder')),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True, verbose_name='created')),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('as_user', models.ForeignKey(blank=True, help_text='Empty: every ready document.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='evaluated as')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('space', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='evaluation_runs', to='search.embeddingspace', verbose_name='space')),
            ],
            options={
                'verbose_name': 'evaluation run',
                'db_table': 'search_evaluationrun',
                'ordering': ['-created_at', '-pk'],
            },
        ),
        migrations.CreateModel(
            name='EvaluationQueryResult',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('query', models.CharField(max_length=1000)),
                ('level', models.CharField(default='chunk', max_length=10)),
                ('relevant', models.JSONField(default=list, help_text='relevant chunk ids or document codes')),
                ('first_relevant_rank', models.PositiveIntegerField(blank=True, null=True)),
                ('reciprocal_rank', models.FloatField(default=0)),
                ('ndcg_at_10', models.FloatField(default=0)),
                ('latency_ms', models.FloatField(default=0)),
                ('expected', models.TextField(blank=True, help_text='the start of the (first) relevant chunk or document')),
                ('top', models.JSONField(blank=True, default=list, help_text='[{rank, id, document, score, relevant, text}] of the first results')),
                ('item', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='evaluation.evaluationitem')),
                ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='results', to='evaluation.evaluationrun')),
            ],
            options={
                'db_table': 'search_evaluationqueryresult',
                'ordering': ['run_id', 'reciprocal_rank', 'pk'],
            },
        ),
        migrations.CreateModel(
            name='EvaluationSet',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.SlugField(max_length=100, unique=True, verbose_name='name')),
                ('description', models.TextField(blank=True, verbose_name='description')),
                ('source', models.CharField(choices=[('jsonl', 'imported eval_pairs.jsonl'), ('feedback', 'built from search feedback'), ('benchmark', 'external benchmark'), ('manual', 'entered by hand')], default='manual', max_length=16, verbose_name='source')),
                ('import_report', models.JSONField(blank=True, default=dict, help_text='Counts, unresolved positives and other findings of the import.', verbose_name='import report')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'evaluation set',
                'db_table': 'search_evaluationset',
                'ordering': ['name'],
            },
        ),
        migrations.AddField(
            model_name='evaluationrun',
            name='evaluation_set',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='runs', to='evaluation.evaluationset', verbose_name='evaluation set'),
        ),
        migrations.AddField(
            model_name='evaluationitem',
            name='evaluation_set',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='items', to='evaluation.evaluationset'),
        ),
    ])]
