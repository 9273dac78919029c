"""Our translation catalogs (locale/{vi,en}/LC_MESSAGES/django.po and
djangojs.po): regenerate them from the sources, and check that they are complete
and current. `manage.py translations` is the command line; tests/test_translations.py
runs the same checks. docs/translations.md describes the workflow.

Conventions: msgids in Python code are English, msgids in templates Vietnamese;
both catalogs translate every msgid (a msgid in its own language is "translated"
to itself, which `update` fills in). Messages of Django, django-guardian and DRF
that those packages ship without Vietnamese are listed in
portal/third_party_messages.py (.js for the admin's JavaScript) so that our
catalogs carry them; LOCALE_PATHS take precedence over the packages' catalogs.
"""
from __future__ import annotations

import contextlib
import gettext
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

LANGUAGES = ("vi", "en")
DOMAINS = ("django", "djangojs")
# Never scanned for msgids: data, environments, tests, benchmarks, docs.
IGNORE = ["var/*", "tests/*", "bench/*", "docs/*", "docker/*", "documents/samples/*", "requirements/*", "node_modules/*"]
VIETNAMESE_LETTERS = re.compile(
    "[àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ]", re.IGNORECASE)
# Our copies of packages' templates keep the packages' (English) msgids.
THIRD_PARTY_TEMPLATES = ("templates/admin/", "templates/drf_spectacular/", "templates/rest_framework/")
# Django's start page for a project without URLs (shown only with DEBUG and no URLconf).
NEVER_SHOWN_SOURCES = ("views/templates/default_urlconf.html",)


def locale_dir() -> Path:
    return Path(settings.LOCALE_PATHS[0])


def po_path(language: str, domain: str = "django", base: Path | None = None) -> Path:
    return (base or locale_dir()) / language / "LC_MESSAGES" / f"{domain}.po"


def msgid_language(msgid: str, occurrences=()) -> str:
    """The language a msgid is written in: Vietnamese if it has Vietnamese
    letters or comes only from our own templates (the convention), else English."""
    if VIETNAMESE_LETTERS.search(msgid):
        return "vi"
    if occurrences and all(path.startswith("templates/") and not path.startswith(THIRD_PARTY_TEMPLATES)
                           for path, _ in occurrences):
        return "vi"
    return "en"


def _polib():
    try:
        import polib
    except ImportError as exc:  # a developer tool: requirements/dev.txt
        raise RuntimeError("polib is needed for the catalog tools: bin/setup dev") from exc
    return polib


@contextlib.contextmanager
def _in_project_root():
    previous = os.getcwd()
    os.chdir(settings.BASE_DIR)
    try:
        yield
    finally:
        os.chdir(previous)


def _makemessages(verbosity: int = 0) -> None:
    from django.core.management import call_command

    with _in_project_root():
        for domain in DOMAINS:
            call_command("makemessages", locale=list(LANGUAGES), domain=domain, ignore_patterns=IGNORE,
                         no_obsolete=True, verbosity=verbosity)


def fill_own_language(base: Path | None = None) -> int:
    """A msgid written in the catalog's language is its own translation: fill
    those left empty. Returns how many entries were filled."""
    polib = _polib()
    filled = 0
    for language in LANGUAGES:
        for domain in DOMAINS:
            path = po_path(language, domain, base)
            if not path.exists():
                continue
            catalog = polib.pofile(str(path), wrapwidth=0)
            # makemessages leaves a new catalog's header fuzzy and without a
            # language; msgfmt then drops the header (and its charset).
            catalog.metadata_is_fuzzy = False
            catalog.metadata.update({"Project-Id-Version": "document portal", "Language": language,
                                     "Content-Type": "text/plain; charset=UTF-8"})
            for entry in catalog:
                if entry.obsolete or entry.fuzzy or msgid_language(entry.msgid, entry.occurrences) != language:
                    continue
                if entry.msgid_plural:
                    if not any(entry.msgstr_plural.values()):
                        forms = int(re.search(r"nplurals=(\d+)", catalog.metadata.get("Plural-Forms", "nplurals=2"))[1])
                        entry.msgstr_plural = {i: entry.msgid if i == 0 else entry.msgid_plural for i in range(forms)}
                        filled += 1
                elif not entry.msgstr:
                    entry.msgstr = entry.msgid
                    filled += 1
            catalog.save(str(path))
    return filled


def compile_catalogs() -> None:
    for language in LANGUAGES:
        for domain in DOMAINS:
            po = po_path(language, domain)
            if po.exists():
                subprocess.run(["msgfmt", "--check-format", "--check-domain", "-o", str(po.with_suffix(".mo")), str(po)], check=True)


def update(verbosity: int = 1) -> int:
    """makemessages for both languages and domains, fill msgids in their own
    language, compile. Returns the number of entries filled."""
    _makemessages(verbosity=max(0, verbosity - 1))
    filled = fill_own_language()
    compile_catalogs()
    return filled


@dataclass
class Report:
    untranslated: dict[str, list[str]] = field(default_factory=dict)  # "vi/django.po" -> msgids
    fuzzy: dict[str, list[str]] = field(default_factory=dict)
    not_in_catalog: dict[str, list[str]] = field(default_factory=dict)  # in the sources, not in the catalog
    obsolete: dict[str, list[str]] = field(default_factory=dict)  # in the catalog, no longer in the sources
    stale_mo: list[str] = field(default_factory=list)
    third_party_missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any((any(self.untranslated.values()), any(self.fuzzy.values()), any(self.not_in_catalog.values()),
                        any(self.obsolete.values()), self.stale_mo, self.third_party_missing))

    def lines(self) -> list[str]:
        out = []
        for title, table in (("untranslated", self.untranslated), ("fuzzy (review, then drop the flag)", self.fuzzy),
                             ("in the sources but not in the catalog (run update)", self.not_in_catalog),
                             ("in the catalog but no longer in the sources (run update)", self.obsolete)):
            for name, msgids in table.items():
                out += [f"{name}: {title}: {m!r}" for m in msgids]
        out += [f"{name}: .mo older than its .po (run update)" for name in self.stale_mo]
        out += [f"no Vietnamese translation in the packages or our catalog: {m!r} (add it to "
                "portal/third_party_messages.py, then update and translate)" for m in self.third_party_missing]
        return out


def _key(entry) -> str:
    return f"{entry.msgctxt}\x04{entry.msgid}" if entry.msgctxt else entry.msgid


def translation_gaps(base: Path | None = None) -> tuple[dict, dict]:
    """(untranslated, fuzzy) entries of every catalog, by "language/domain.po"."""
    polib = _polib()
    untranslated, fuzzy = {}, {}
    for language in LANGUAGES:
        for domain in DOMAINS:
            path = po_path(language, domain, base)
            if not path.exists():
                continue
            name = f"{language}/{domain}.po"
            catalog = polib.pofile(str(path))
            live = [e for e in catalog if not e.obsolete]
            untranslated[name] = [_key(e) for e in live if not e.fuzzy and not (
                all(v.strip() for v in e.msgstr_plural.values()) and e.msgstr_plural if e.msgid_plural
                else e.msgstr.strip())]
            fuzzy[name] = [_key(e) for e in live if e.fuzzy]
    return untranslated, fuzzy


def source_drift() -> tuple[dict, dict]:
    """Run makemessages on a copy of the catalogs: (msgids the sources have and
    the catalogs lack, msgids the catalogs have and the sources lack)."""
    from django.core.management import call_command
    from django.test.utils import override_settings

    polib = _polib()
    added, removed = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        # makemessages writes next to the sources' nearest locale folder (./locale
        # counts whatever LOCALE_PATHS say): run it in a tree of links to the
        # sources beside a copy of the catalogs, so the real ones stay untouched.
        root = Path(tmp)
        copy = root / "locale"
        shutil.copytree(locale_dir(), copy)
        skipped = {pattern.split("/")[0] for pattern in IGNORE if pattern.count("/") == 1} | {"locale"}
        for item in Path(settings.BASE_DIR).iterdir():
            if not item.name.startswith(".") and item.name not in skipped:
                (root / item.name).symlink_to(item, target_is_directory=item.is_dir())
        previous = os.getcwd()
        os.chdir(root)
        try:
            with override_settings(LOCALE_PATHS=[copy]):
                for domain in DOMAINS:
                    call_command("makemessages", locale=list(LANGUAGES), domain=domain, ignore_patterns=IGNORE,
                                 symlinks=True, no_obsolete=False, verbosity=0)
        finally:
            os.chdir(previous)
        for language in LANGUAGES:
            for domain in DOMAINS:
                fresh, ours = po_path(language, domain, copy), po_path(language, domain)
                if not fresh.exists() and not ours.exists():
                    continue
                name = f"{language}/{domain}.po"
                fresh_keys = {_key(e) for e in polib.pofile(str(fresh)) if not e.obsolete} if fresh.exists() else set()
                our_keys = {_key(e) for e in polib.pofile(str(ours)) if not e.obsolete} if ours.exists() else set()
                added[name] = sorted(fresh_keys - our_keys)
                removed[name] = sorted(our_keys - fresh_keys)
    return added, removed


def stale_compiled() -> list[str]:
    """Catalogs whose committed .mo does not hold what their .po compiles to."""
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for language in LANGUAGES:
            for domain in DOMAINS:
                po = po_path(language, domain)
                if not po.exists():
                    continue
                fresh = Path(tmp) / f"{language}-{domain}.mo"
                subprocess.run(["msgfmt", "-o", str(fresh), str(po)], check=True)
                mo = po.with_suffix(".mo")
                with fresh.open("rb") as a:
                    want = gettext.GNUTranslations(a)._catalog
                have = None
                if mo.exists():
                    with mo.open("rb") as b:
                        have = gettext.GNUTranslations(b)._catalog
                if have != want:
                    stale.append(f"{language}/{domain}.mo")
    return stale


def third_party_without_vietnamese() -> list[str]:
    """Messages of Django (core, admin, auth, contenttypes, sessions and the
    admin's JavaScript), django-guardian and DRF that have no Vietnamese
    translation in the merged catalogs the portal serves."""
    import django
    import guardian
    import rest_framework
    from django.conf import global_settings
    from django.conf.locale import LANG_INFO
    from django.utils.translation import trans_real

    polib = _polib()
    django_dir, guardian_dir, drf_dir = (Path(m.__file__).parent for m in (django, guardian, rest_framework))
    language_names = {name for _, name in global_settings.LANGUAGES} | {i.get("name") for i in LANG_INFO.values()}
    catalog = trans_real.DjangoTranslation("vi")._catalog  # a fresh merge: sees catalogs compiled just now
    missing = []

    def known(key, plural):
        return ((key, 0) if plural else key) in catalog

    # Django's English catalogs list every msgid of the version installed; guardian
    # ships no English one, so its French catalog stands for its msgids.
    for po in (django_dir / "conf/locale/en/LC_MESSAGES/django.po",
               *(django_dir / f"contrib/{app}/locale/en/LC_MESSAGES/django.po"
                 for app in ("admin", "auth", "contenttypes", "sessions")),
               guardian_dir / "locale/fr/LC_MESSAGES/django.po"):
        for entry in polib.pofile(str(po)):
            if entry.obsolete or entry.msgid in language_names or any(
                    path.endswith(NEVER_SHOWN_SOURCES) for path, _ in entry.occurrences):
                continue
            if not known(_key(entry), bool(entry.msgid_plural)):
                missing.append(_key(entry))
    # DRF ships compiled catalogs only: its English one holds every msgid.
    with (drf_dir / "locale/en/LC_MESSAGES/django.mo").open("rb") as fh:
        for key in gettext.GNUTranslations(fh)._catalog:
            if isinstance(key, tuple):
                if key[1] == 0 and key not in catalog:
                    missing.append(key[0])
            elif key and key not in catalog:
                missing.append(key)
    # The admin's JavaScript asks its own catalog (djangojs).
    js = trans_real.DjangoTranslation("vi", domain="djangojs", localedirs=[str(django_dir / "contrib/admin/locale")])
    for key in admin_javascript_msgids(django_dir / "contrib/admin/static/admin/js"):
        if key not in js._catalog and (key, 0) not in js._catalog:
            missing.append(key)
    return sorted(set(missing))


JS_CALL = re.compile(r"""\b(?:(n)gettext|(p)gettext|gettext)\(\s*(['"])((?:(?!\3)[^\\]|\\.)*)\3"""
                     r"""(?:\s*,\s*(['"])((?:(?!\5)[^\\]|\\.)*)\5)?""")


def _js_unescape(literal: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), literal)


def admin_javascript_msgids(js_dir: Path) -> set[str]:
    """Catalog keys the admin's scripts look up: gettext('…'), ngettext('…', …),
    pgettext('context', '…') → 'context\\x04…'."""
    keys = set()
    for path in js_dir.rglob("*.js"):
        if "vendor" in path.parts or path.name.endswith(".min.js"):
            continue
        for m in JS_CALL.finditer(path.read_text(encoding="utf-8")):
            first = _js_unescape(m[4])
            if m[2]:  # pgettext(context, msgid)
                if m[6] is not None:
                    keys.add(f"{first}\x04{_js_unescape(m[6])}")
            else:
                keys.add(first)
    return keys


def check(*, sources: bool = True) -> Report:
    report = Report()
    report.untranslated, report.fuzzy = translation_gaps()
    if sources:
        report.not_in_catalog, report.obsolete = source_drift()
    report.stale_mo = stale_compiled()
    report.third_party_missing = third_party_without_vietnamese()
    return report
