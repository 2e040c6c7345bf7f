"""Every example in the adapter's docstrings runs, as written (public API documented with
examples that run)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import ajwt_langchain


def _modules() -> list[ModuleType]:
    names = [info.name for info in pkgutil.iter_modules(ajwt_langchain.__path__)]
    return [ajwt_langchain, *(importlib.import_module(f"ajwt_langchain.{n}") for n in names)]


@pytest.mark.parametrize("module", _modules(), ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} example(s) of {module.__name__} failed"
