"""Document.language becomes a choice (vi, en, mixed). Values typed freely
before are mapped onto the choices; anything unrecognised becomes the default
"vi" (the portal's main language) and is listed on the console."""

from django.db import migrations, models

ALIASES = {
    "vi": "vi", "vie": "vi", "vi-vn": "vi", "vi_vn": "vi", "vietnamese": "vi", "tiếng việt": "vi",
    "en": "en", "eng": "en", "en-us": "en", "en_us": "en", "en-gb": "en", "english": "en", "tiếng anh": "en",
    "mixed": "mixed", "vi-en": "mixed", "en-vi": "mixed", "vi,en": "mixed", "en,vi": "mixed", "bilingual": "mixed",
    "việt–anh": "mixed", "việt-anh": "mixed", "song ngữ": "mixed",
}


def map_languages(apps, schema_editor):
    Document = apps.get_model("documents", "Document")
    unknown = []
    for doc in Document.objects.exclude(language__in=["vi", "en", "mixed"]).only("pk", "code", "language"):
        value = ALIASES.get((doc.language or "").strip().lower())
        if value is None:
            unknown.append(f"{doc.code} ({doc.language!r})")
            value = "vi"
        Document.objects.filter(pk=doc.pk).update(language=value)
    if unknown:
        print(f"\n  language set to 'vi' for documents with an unrecognised language: {', '.join(unknown)}")


class Migration(migrations.Migration):

    dependencies = [
        ('documents', '0002_initial'),
    ]

    operations = [
        migrations.RunPython(map_languages, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='document',
            name='language',
            field=models.CharField(choices=[('vi', 'Vietnamese'), ('en', 'English'), ('mixed', 'Mixed (Vietnamese–English)')], default='vi', max_length=16, verbose_name='language'),
        ),
    ]
