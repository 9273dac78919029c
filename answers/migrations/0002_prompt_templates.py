import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def seed_built_in(apps, schema_editor):
    """Version 1 of each language: the built-in prompt, active, so the admin has a text to edit."""
    from answers.services.prompt import BUILT_IN

    PromptTemplate = apps.get_model("answers", "PromptTemplate")
    for language, prompt in BUILT_IN.items():
        if not PromptTemplate.objects.filter(language=language).exists():
            PromptTemplate.objects.create(language=language, version=1, system_prompt=prompt.system,
                                          user_template=prompt.user_template, is_active=True,
                                          note="built-in prompt (migration 0002)")


def remove_seeded(apps, schema_editor):
    apps.get_model("answers", "PromptTemplate").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ('answers', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PromptTemplate',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('language', models.CharField(choices=[('vi', 'Vietnamese'), ('en', 'English')], help_text='Questions in this language are answered with it.', max_length=2, verbose_name='language')),
                ('version', models.PositiveIntegerField(editable=False, verbose_name='version')),
                ('system_prompt', models.TextField(help_text='The rules the model follows. Must tell the model to reply exactly NOT_FOUND when the sources do not answer; no placeholders.', verbose_name='system prompt')),
                ('user_template', models.TextField(help_text='The question and the sources: must contain {question} and {sources} once each (the portal fills them in, quoted and delimited as data); write a literal brace as {{ or }}.', verbose_name='user message')),
                ('note', models.CharField(blank=True, max_length=300, verbose_name='what changed')),
                ('is_active', models.BooleanField(default=False, verbose_name='active')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='created by')),
            ],
            options={
                'verbose_name': 'prompt template',
                'verbose_name_plural': 'prompt templates',
                'ordering': ['language', '-version'],
                'constraints': [models.UniqueConstraint(fields=('language', 'version'), name='answers_prompt_language_version'), models.UniqueConstraint(condition=models.Q(('is_active', True)), fields=('language',), name='answers_prompt_one_active_per_language')],
            },
        ),
        migrations.AddField(
            model_name='answerlog',
            name='prompt',
            field=models.ForeignKey(blank=True, help_text='The version the chat model was asked with (empty: the built-in prompt, or no model was asked).', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='answers.prompttemplate', verbose_name='prompt template'),
        ),
        migrations.RunPython(seed_built_in, remove_seeded),
    ]
