"""Registered workflows as the IdP reads them: a version is immutable and kept in memory,
the latest version is looked up each time (another worker may have registered a newer
one on the same database)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ajwt_core.errors import NotFound
from ajwt_core.idp.db import Database
from ajwt_core.idp.service import IdP
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.keys import SigningKeySet
from ajwt_core.workflow import reference_workflow


def _worker(db_url: str) -> IdP:
    settings = IdPSettings(issuer="https://idp.test", db_url=db_url, admin_token="a" * 32)
    return IdP(settings, Database(db_url), SigningKeySet.generate())


def test_the_latest_version_registered_by_another_worker_is_seen(tmp_path: Path) -> None:
    async def scenario() -> None:
        url = f"sqlite:///{tmp_path}/idp.db"
        first, second = _worker(url), _worker(url)
        await first.db.create_schema()
        v1 = reference_workflow().canonical()
        await first.register_workflow(v1)
        assert (await first.workflow(v1["id"])).version == v1["version"]
        await second.register_workflow(v1 | {"version": v1["version"] + 1})
        latest = await first.workflow(v1["id"])
        assert latest.version == v1["version"] + 1
        assert (await first.workflow(v1["id"], v1["version"])).version == v1["version"]
        with pytest.raises(NotFound, match="version None"):
            await first.workflow("no-such-workflow")
        with pytest.raises(NotFound, match="version 99"):
            await first.workflow(v1["id"], 99)
        for worker in (first, second):
            await worker.db.dispose()

    asyncio.run(scenario())
