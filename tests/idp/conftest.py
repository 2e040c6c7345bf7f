"""An in-process IdP on each backend (SQLite; PostgreSQL when reachable, required in CI)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.idp.support import BACKENDS, IdPHarness, database_url


@pytest.fixture(scope="module", params=BACKENDS)
def harness(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IdPHarness]:
    with database_url(request.param, tmp_path_factory.mktemp("idp")) as url:
        running = IdPHarness(url)
        try:
            yield running
        finally:
            running.close()
