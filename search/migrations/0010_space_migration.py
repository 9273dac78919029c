# Space migrations (issue 11): the state machine's table and its one-open-migration constraint.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0009_semantic_only_floor'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='SpaceMigration',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('state', models.CharField(choices=[('planned', 'planned'), ('backfilling', 'backfilling'), ('indexing', 'building the index'), ('evaluating', 'evaluating'), ('ab_testing', 'A/B testing'), ('promoted', 'promoted'), ('rolled_back', 'rolled back'), ('cancelled', 'cancelled'), ('failed', 'failed')], db_index=True, default='planned', max_length=16, verbose_name='state')),
                ('status_message', models.CharField(blank=True, max_length=200, verbose_name='step')),
                ('error', models.TextField(blank=True, verbose_name='error')),
                ('cancel_requested', models.BooleanField(default=False, verbose_name='cancel requested')),
                ('target_previous_status', models.CharField(blank=True, max_length=16, verbose_name="target's previous status")),
                ('target_previous_share', models.FloatField(default=0.0, verbose_name="target's previous traffic share")),
                ('cursor', models.BigIntegerField(default=0, verbose_name='cursor (last chunk id done)')),
                ('done_chunks', models.PositiveIntegerField(default=0, verbose_name='chunks done')),
                ('total_chunks', models.PositiveIntegerField(default=0, verbose_name='chunks in all')),
                ('embedded_chunks', models.PositiveIntegerField(default=0, help_text='Chunks this migration encoded (the others already had a vector in the target).', verbose_name='chunks encoded')),
                ('chunks_per_second', models.FloatField(blank=True, null=True, verbose_name='chunks per second')),
                ('eta_seconds', models.PositiveIntegerField(blank=True, null=True, verbose_name='seconds left (estimate)')),
                ('index_progress', models.JSONField(blank=True, default=dict, help_text='Read from pg_stat_progress_create_index.', verbose_name='index build progress')),
                ('step_token', models.CharField(blank=True, editable=False, max_length=32)),
                ('holder', models.CharField(blank=True, max_length=120, verbose_name='worker')),
                ('queued_at', models.DateTimeField(blank=True, null=True, verbose_name='queued')),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True, verbose_name='last heartbeat')),
                ('stalls', models.PositiveSmallIntegerField(default=0, verbose_name='stalls without progress')),
                ('history', models.JSONField(blank=True, default=list, help_text='Each change of state: when, who and why.', verbose_name='history')),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True, verbose_name='created')),
                ('started_at', models.DateTimeField(blank=True, null=True, verbose_name='backfill started')),
                ('backfilled_at', models.DateTimeField(blank=True, null=True, verbose_name='backfill finished')),
                ('indexed_at', models.DateTimeField(blank=True, null=True, verbose_name='index built')),
                ('promoted_at', models.DateTimeField(blank=True, null=True, verbose_name='promoted')),
                ('finished_at', models.DateTimeField(blank=True, null=True, verbose_name='finished')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='started by')),
                ('source', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='search.embeddingspace', verbose_name='source space')),
                ('target', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='search.embeddingspace', verbose_name='target space')),
            ],
            options={
                'verbose_name': 'space migration',
                'verbose_name_plural': 'space migrations',
                'ordering': ['-created_at'],
                'constraints': [models.UniqueConstraint(models.Value(True), condition=models.Q(('state__in', ('planned', 'backfilling', 'indexing', 'evaluating', 'ab_testing'))), name='one_open_space_migration'), models.CheckConstraint(condition=models.Q(('source', models.F('target')), _negated=True), name='migration_source_is_not_target')],
            },
        ),
    ]
