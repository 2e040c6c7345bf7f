"""Issue 8: the IdP killed with SIGKILL in the middle of a mint load and restarted: every
token a client received has its ledger entry, every ledger verifies, no half-written
rows (the run's stored head is the verified head). SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest

from ajwt_core.errors import AJWTError
from ajwt_core.shim import Run, Shim
from tests.e2e.test_postgres_redis import postgres_url  # noqa: F401 - fixture
from tests.scale.idp_process import IdPProcess

pytestmark = pytest.mark.heavy

RUNS = 8


def _load(shim: Shim, runs: list[Run], received: list[str], stop: threading.Event) -> None:
    async def worker(run: Run, index: int) -> None:
        i = 0
        with shim.run(run):
            while not stop.is_set():
                i += 1
                try:
                    async with shim.aacting("supervisor", tool="list_repos") as context:
                        issued = await shim.atoken(context, f"https://api-{index}-{i}.example")
                    received.append(issued.token)
                except (httpx.HTTPError, AJWTError):
                    await asyncio.sleep(0.05)  # the IdP is down: nothing was received

    async def main() -> None:
        await asyncio.gather(*(worker(run, n) for n, run in enumerate(runs)))

    asyncio.run(main())


def _crash_and_check(db_url: str, tmp_path: Path) -> None:
    idp = IdPProcess(db_url, tmp_path / "keys.json", workers=1)
    idp.start()
    try:
        shim = idp.setup_client()
        admin = idp.admin()
        runs = [shim.start_run(admin.user_token(f"user:{i}"), "vuln-patch") for i in range(RUNS)]
        admin.close()
        received: list[str] = []
        stop = threading.Event()
        load = threading.Thread(target=_load, args=(shim, runs, received, stop))
        load.start()
        time.sleep(2.0)
        before_kill = len(received)
        idp.kill()
        time.sleep(0.5)
        stop.set()
        load.join(timeout=30)
        assert before_kill > 20, "the load did not get going"
        idp.start()  # same port, database and key file
        admin = idp.admin()
        minted: dict[str, dict[str, object]] = {}
        for run in runs:
            report = admin.verify_ledger(run.run_id)
            assert report["ok"], report
            with httpx.Client() as http:
                status = http.get(f"{idp.url}/runs/{run.run_id}/status").json()
            assert status["ledger_head"] == report["head"]  # stored head == verified head
            for entry in admin.ledger(run.run_id)["entries"]:
                if entry["kind"] == "token_minted":
                    minted[entry["data"]["jti"]] = entry
        for token in received:
            claims = jwt.decode(token, options={"verify_signature": False})
            entry = minted.get(claims["jti"])
            assert entry is not None, "a received token has no ledger entry"
            assert entry["entry_hash"] == claims["intent"]["step_sequence_hash"]
        admin.close()
    finally:
        with contextlib.suppress(Exception):
            idp.stop()


def test_crash_during_mint_load_loses_nothing_sqlite(tmp_path: Path) -> None:
    _crash_and_check(f"sqlite:///{tmp_path}/idp.db", tmp_path)


@pytest.mark.postgres
def test_crash_during_mint_load_loses_nothing_postgres(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    _crash_and_check(postgres_url, tmp_path)
