"""Issue 8: two IdP workers on PostgreSQL, 20 concurrent runs × 20 mints: no errors,
every ledger verifies, and every token's step_sequence_hash is its own ledger entry."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jwt
import pytest

from ajwt_core.shim import Run
from tests.e2e.test_postgres_redis import postgres_url  # noqa: F401 - fixture
from tests.scale.idp_process import idp_process

pytestmark = [pytest.mark.heavy, pytest.mark.postgres]

RUNS, MINTS = 20, 20


def test_concurrent_mints_on_two_workers_keep_every_ledger_chained(
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    with idp_process(postgres_url, tmp_path / "keys.json", workers=2) as idp:
        shim = idp.setup_client()
        admin = idp.admin()
        runs = [shim.start_run(admin.user_token(f"user:{i}"), "vuln-patch") for i in range(RUNS)]

        async def mint_all(run: Run) -> list[str]:
            tokens = []
            with shim.run(run):
                for i in range(MINTS):
                    async with shim.aacting("supervisor", tool="list_repos") as context:
                        tokens.append(
                            (await shim.atoken(context, f"https://api-{i}.example")).token
                        )
            return tokens

        async def main() -> list[Any]:
            return await asyncio.gather(*(mint_all(r) for r in runs), return_exceptions=True)

        results = asyncio.run(main())
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        for run, tokens in zip(runs, results, strict=True):
            report = admin.verify_ledger(run.run_id)
            assert report["ok"], report
            entries = admin.ledger(run.run_id)["entries"]
            by_jti = {e["data"].get("jti"): e for e in entries if e["kind"] == "token_minted"}
            assert len(by_jti) == MINTS
            for token in tokens:
                claims = jwt.decode(token, options={"verify_signature": False})
                entry = by_jti[claims["jti"]]
                assert claims["intent"]["step_sequence_hash"] == entry["entry_hash"]
        admin.close()
