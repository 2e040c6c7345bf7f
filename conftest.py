"""Docs are code: every ```python and ```sh block of the README files and of ``docs/`` runs
as a test, as written (Sybil).

- The ``python`` blocks of one page run in order in one namespace, like one program: a
  page that needs an IdP starts one itself (and stops it at its end), as a reader would.
- ``sh`` blocks run with bash from the repository root, the project's ``.venv/bin`` first
  on ``PATH``, and must exit 0.
- Anything that is not meant to run is fenced as ``text`` (a ``pip install``, output).
- ``<!-- skip: next -->`` before a block is allowed only where CI runs that very command
  itself (the README's two quick-start commands: ``.ci/run`` runs them).
- A page a reader follows in several terminals (``docs/getting-started.md``) uses four
  more comments, each on the line before a block: ``<!-- file: api.py -->`` (the block is
  saved to that file, not run), ``<!-- background: 8001 -->`` (the ``sh`` block is a
  server left running: the page goes on once port 8001 answers, and fails at once if the
  port is already taken; it is stopped at the page's end), ``<!-- output -->`` (the
  ``text`` block is exactly what the ``sh`` block before it printed) and
  ``<!-- install -->`` (the page's ``pip install`` line: checked against the installed
  distributions here, run from the built wheels by ``tests/packaging/test_wheels.py``).
  A page with ``file:`` or ``background:`` runs in a scratch directory of its own.
  ``tests/docpages.py`` implements them, for both.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sybil import Document, Example, Region, Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

from tests.docpages import Block, Page, directive_before

ROOT = Path(__file__).resolve().parent
PAGE_KEY = "__docs_page__"


def _page(example: Example) -> Page:
    page = example.namespace.get(PAGE_KEY)
    if page is None:
        page = Page.open(Path(example.path), Path(sys.executable).parent, root=ROOT)
        example.namespace[PAGE_KEY] = page
    assert isinstance(page, Page)
    return page


def _run_block(example: Example) -> None:
    language, source, directive = example.parsed
    _page(example).run(Block(language, source, example.line, directive))


class PageBlockParser:
    """``sh`` blocks, and every block with a directive (``tests/docpages.py``)."""

    lexer = FencedCodeBlockLexer(
        language=r".+", mapping={"language": "arguments", "source": "source"}
    )

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in self.lexer(document):
            language = str(region.lexemes["arguments"]).strip()
            directive = directive_before(document.text, region.start)
            if directive is None and language != "sh":
                continue
            region.parsed = (language, str(region.lexemes["source"]), directive)
            region.evaluator = _run_block
            yield region


class PlainPythonParser(PythonCodeBlockParser):
    """``python`` blocks without a directive: run in the page's namespace."""

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in super().__call__(document):
            if directive_before(document.text, region.start) is None:
                yield region


def _setup(namespace: dict[str, Any]) -> None:
    # A page's blocks are one program, run as a script is.
    namespace["__name__"] = "__main__"


def _teardown(namespace: dict[str, Any]) -> None:
    page = namespace.pop(PAGE_KEY, None)
    if isinstance(page, Page):
        page.close()


pytest_collect_file = Sybil(
    setup=_setup,
    teardown=_teardown,
    parsers=[PlainPythonParser(), PageBlockParser(), SkipParser()],
    patterns=["README.md", "*.md"],
    excludes=["CHANGELOG.md"],
).pytest()
