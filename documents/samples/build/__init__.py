"""Generator and verifier of the SVTech sample corpus (developer tool, not run in CI).

Run it through ``documents/samples/build_samples.py`` (or ``python -m
documents.samples.build`` from the repository root); see ``__main__``.

Each ``source/<CODE>.md`` starts with a small front matter block
(``key: value`` lines between ``---`` markers) followed by the document body in
a Markdown subset:

* ``## 1. Heading`` (section) and ``### 1.1 Heading`` (subsection)
* paragraphs, ``- `` bullet items, ``1. `` numbered items
* pipe tables (first row is the header; ``|---|`` separator rows optional)
* fenced code blocks (three backticks) and inline code in backticks

The front matter ``format`` key picks the output format (docx, pdf, html, md,
txt, pptx, xlsx).  ``source/_taxonomy.json`` holds the departments and the tag
tree.  The build also writes ``manifest.json`` and then re-reads every
generated file to check that the text (Vietnamese diacritics included) can be
extracted again.

Modules: ``source`` (parsing ``source/``, the manifest), ``common`` (helpers
shared by the renderers), ``render_text`` (md, txt, html), ``render_office``
(docx, pptx, xlsx), ``render_pdf``, ``verify`` (re-extraction and corpus
checks) and ``__main__`` (build + CLI).

Generator-only dependency: reportlab (see requirements/dev.txt).  python-docx,
python-pptx, openpyxl and pdfminer.six come with the runtime requirements.
"""
