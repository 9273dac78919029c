from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("answers", "0002_prompt_templates"),
    ]

    operations = [
        migrations.AddField(
            model_name="answerlog",
            name="client_key",
            field=models.CharField(blank=True, max_length=64, verbose_name="visitor"),
        ),
        migrations.AddField(
            model_name="answerlog",
            name="opened",
            field=models.JSONField(blank=True, default=list,
                                   help_text="[{number, chunk_id, document_id, at}], in the order first opened",
                                   verbose_name="citations opened"),
        ),
        migrations.AddField(
            model_name="answerlog",
            name="helpful",
            field=models.BooleanField(blank=True, help_text="The asker's vote (blank: no vote).", null=True,
                                      verbose_name="helpful"),
        ),
        migrations.AddField(
            model_name="answerlog",
            name="voted_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="voted"),
        ),
    ]
