from __future__ import annotations

from collections.abc import Iterator

import pytest

from ajwt_demo.stack import Stack, start_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("idp") / "idp.db")
    yield running
    running.close()
