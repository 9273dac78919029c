#!/usr/bin/env python
"""Render the SVTech sample corpus from ``source/*.md`` into ``files/``.

Developer tool, not run in CI.  Usage (from the repository root)::

    .venv/bin/python documents/samples/build_samples.py           # build + verify
    .venv/bin/python documents/samples/build_samples.py --check   # verify only

Thin entry point: the generator and verifier live in the ``build/`` package
next to this file (source format and module layout in its docstring).
"""
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, only documents/samples/ is on sys.path; the package is
# imported by its full name from the repository root.
_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from documents.samples.build.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
