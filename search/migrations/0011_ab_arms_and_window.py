# A/B test of a space migration (issue 11 item 5): the arm of each search and the test's window.

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('search', '0010_space_migration'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='searchlog',
            name='arm',
            field=models.CharField(blank=True, choices=[('source', 'source'), ('target', 'target')], default='', max_length=8, verbose_name='A/B arm'),
        ),
        migrations.AddField(
            model_name='spacemigration',
            name='ab_ended_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='A/B test ended'),
        ),
        migrations.AddField(
            model_name='spacemigration',
            name='ab_started_at',
            field=models.DateTimeField(blank=True, null=True, verbose_name='A/B test started'),
        ),
        migrations.AddIndex(
            model_name='searchlog',
            index=models.Index(condition=models.Q(('arm', ''), _negated=True), fields=['created_at', 'arm'], name='search_log_ab_window'),
        ),
    ]
