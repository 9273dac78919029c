"""Documents, their chunks, the tag taxonomy and departments."""
from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


class Department(models.Model):
    code = models.SlugField(_("code"), max_length=32, unique=True)
    name = models.CharField(_("name"), max_length=200)

    class Meta:
        ordering = ["code"]
        verbose_name = _("department")
        verbose_name_plural = _("departments")

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"


class Tag(models.Model):
    """A taxonomy: filtering by a tag includes its descendants."""

    slug = models.SlugField(_("slug"), max_length=64, unique=True, allow_unicode=True)
    name = models.CharField(_("name"), max_length=120)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="children", verbose_name=_("parent"))

    class Meta:
        ordering = ["slug"]
        verbose_name = _("tag")
        verbose_name_plural = _("tags")

    def __str__(self) -> str:
        return self.name

    def descendant_ids(self) -> set[int]:
        """This tag and every tag below it (the taxonomy is small; one query per level)."""
        found, frontier = {self.pk}, [self.pk]
        while frontier:
            frontier = list(Tag.objects.filter(parent_id__in=frontier).exclude(pk__in=found)
                            .values_list("pk", flat=True))
            found.update(frontier)
        return found


class DocumentType(models.TextChoices):
    POLICY = "policy", _("Chính sách (policy)")
    PROCEDURE = "procedure", _("Quy trình (procedure)")
    TECHNICAL_GUIDE = "technical_guide", _("Hướng dẫn kỹ thuật (technical guide)")
    REPORT = "report", _("Báo cáo (report)")


class AccessLevel(models.IntegerChoices):
    PUBLIC = 0, _("Công khai (public)")
    INTERNAL = 1, _("Nội bộ (internal)")
    RESTRICTED = 2, _("Hạn chế — phòng ban (restricted)")
    CONFIDENTIAL = 3, _("Mật (confidential)")


class DocumentStatus(models.TextChoices):
    PENDING = "pending", _("Chờ xử lý (pending)")
    PROCESSING = "processing", _("Đang xử lý (processing)")
    READY = "ready", _("Sẵn sàng (ready)")
    FAILED = "failed", _("Lỗi (failed)")


class DocumentLanguage(models.TextChoices):
    VIETNAMESE = "vi", _("Vietnamese")
    ENGLISH = "en", _("English")
    MIXED = "mixed", _("Mixed (Vietnamese–English)")


class ProcessingStep:
    """What `Document.status_message` holds: stable English msgids, stored as
    they are and translated when shown (`Document.status_message_display`), so
    a page, the admin and the API show the step in the reader's language."""

    QUEUED = gettext_noop("Queued")
    EXTRACTING = gettext_noop("Extracting text")
    CHUNKING = gettext_noop("Chunking")
    KEYWORDS = gettext_noop("Extracting keywords")
    READY = gettext_noop("Ready")
    FAILED = gettext_noop("Failed")
    # while the task queue cannot be reached (documents.services.intake.enqueue_processing)
    WAITING_FOR_QUEUE = gettext_noop(
        "Waiting for the task queue (processing starts automatically when it is back)")


class TitleSource(models.TextChoices):
    """Where a document's title came from: a title a person typed is never replaced."""
    UPLOADER = "uploader", _("typed by a person")
    DOCUMENT = "document", _("the document's own title")
    FILENAME = "filename", _("the file name")


def original_upload_path(instance: "Document", filename: str) -> str:
    # Content-addressed: the checksum is unique, so two uploads never overwrite each other.
    return f"originals/{instance.checksum[:2]}/{instance.checksum}/{filename}"


class Document(models.Model):
    # Unique among the documents one user may see, not globally: a code held by a
    # document the uploader cannot see must look free (decisions.md, issue 9 S6).
    code = models.CharField(_("code"), max_length=64, db_index=True,
                            help_text=_("e.g. HR_POLICY_2024_001"))
    title = models.CharField(_("title"), max_length=300)
    title_source = models.CharField(
        _("title from"), max_length=16, choices=TitleSource.choices, default=TitleSource.UPLOADER,
        help_text=_("Processing replaces a title taken from the file name by the document's own title; "
                    "a title typed by a person is kept."))
    document_type = models.CharField(_("type"), max_length=32, choices=DocumentType.choices,
                                     default=DocumentType.POLICY)
    departments = models.ManyToManyField(Department, blank=True, related_name="documents",
                                         verbose_name=_("departments"))
    access_level = models.PositiveSmallIntegerField(_("access level"), choices=AccessLevel.choices,
                                                    default=AccessLevel.INTERNAL, db_index=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="documents", verbose_name=_("tags"))
    language = models.CharField(_("language"), max_length=16, choices=DocumentLanguage.choices,
                                default=DocumentLanguage.VIETNAMESE)
    source_file = models.FileField(_("original file"), upload_to=original_upload_path, max_length=500)
    original_filename = models.CharField(_("original file name"), max_length=255)
    file_size = models.PositiveBigIntegerField(_("size (bytes)"), default=0)
    checksum = models.CharField(_("SHA-256"), max_length=64, unique=True)
    status = models.CharField(_("status"), max_length=16, choices=DocumentStatus.choices,
                              default=DocumentStatus.PENDING, db_index=True)
    progress = models.PositiveSmallIntegerField(_("progress %"), default=0)
    status_message = models.CharField(_("current step"), max_length=200, blank=True)
    error = models.TextField(_("error"), blank=True)
    content = models.TextField(_("extracted text"), blank=True,
                               help_text=_("NFC-normalised text; chunk offsets point into it."))
    attempts = models.PositiveSmallIntegerField(_("processing attempts"), default=0)
    heartbeat_at = models.DateTimeField(_("last sign of life"), null=True, blank=True,
                                        help_text=_("Renewed every few seconds while the document is processed; "
                                                    "a stale one means the worker died."))
    holder = models.CharField(_("processed by"), max_length=120, blank=True,
                              help_text=_("The worker (host:process) processing the document now."))
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True,
                                     help_text=_("Last time work on this document was queued; empty when the task "
                                                 "queue was unreachable (the recovery sweep queues it)."))
    version = models.CharField(_("version"), max_length=32, default="1.0")
    effective_date = models.DateField(_("effective date"), null=True, blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="owned_documents", verbose_name=_("owner"))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("document")
        verbose_name_plural = _("documents")
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.code}: {self.title}"

    @property
    def status_message_display(self) -> str:
        """The current step in the active language (stored as a msgid)."""
        return gettext(self.status_message) if self.status_message else ""


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks",
                                 verbose_name=_("document"))
    ordinal = models.PositiveIntegerField(_("position"))
    text = models.TextField(_("text"))
    token_count = models.PositiveIntegerField(_("tokens"))
    heading_path = ArrayField(models.CharField(max_length=300), default=list, blank=True,
                              verbose_name=_("headings"))
    char_start = models.PositiveIntegerField(_("start offset"))
    char_end = models.PositiveIntegerField(_("end offset"))
    keywords = ArrayField(models.CharField(max_length=100), default=list, blank=True,
                          verbose_name=_("keywords"))

    class Meta:
        ordering = ["document_id", "ordinal"]
        constraints = [models.UniqueConstraint(fields=["document", "ordinal"], name="chunk_unique_ordinal")]
        verbose_name = _("chunk")
        verbose_name_plural = _("chunks")

    def __str__(self) -> str:
        return f"{self.document.code}#{self.ordinal}"


# Direct foreign keys for guardian grants: the access filter joins these by
# document id instead of casting generic object_pk strings.
class DocumentUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Document, on_delete=models.CASCADE)


class DocumentGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Document, on_delete=models.CASCADE)
