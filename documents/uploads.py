"""Upload size limit at the request, before a file is written anywhere.

Django streams an upload larger than FILE_UPLOAD_MAX_MEMORY_SIZE into a
temporary file, all of it, before any form sees it: a 120 MB upload made
120 MB of disk before it was refused. `UploadLimitHandler`, first in
FILE_UPLOAD_HANDLERS, passes a file's data on to the handlers that store it
only up to PORTAL_UPLOAD_MAX_BYTES; past that it only counts the bytes (the
request body must still be read to answer it) and hands the form an empty
stand-in of the same name and size, which every upload form refuses with the
limit in its message. The partial temporary file is dropped with its handler.
"""
from __future__ import annotations

import io

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class OversizedUpload(UploadedFile):
    """A file that was over the limit: its name and size, no content."""

    def __init__(self, name: str, content_type: str, size: int, charset: str | None):
        super().__init__(io.BytesIO(), name, content_type, size, charset)


class UploadLimitHandler(FileUploadHandler):
    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.seen = 0

    def receive_data_chunk(self, raw_data, start):
        self.seen += len(raw_data)
        if self.seen > settings.UPLOAD_MAX_BYTES:
            return None  # not passed on: the storing handlers stop receiving this file
        return raw_data

    def file_complete(self, file_size):
        if self.seen > settings.UPLOAD_MAX_BYTES:
            return OversizedUpload(self.file_name, self.content_type, self.seen, self.charset)
        return None  # within the limit: the next handler's file
