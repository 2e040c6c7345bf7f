"""A bounded load run against real server processes on 127.0.0.1 (issue 8).

    .venv/bin/python -m benchmarks.load [--mints 2000] [--requests 20000] [--json FILE]

The IdP runs as 2 uvicorn workers on PostgreSQL (a throwaway database; SQLite and 1
worker if PostgreSQL is not reachable) and the reference API as 2 workers sharing Redis
for replay and revocation. From this process, concurrent async clients make the mints
(each a fresh ``agent_checksum`` grant) and then the API requests (each with a fresh DPoP
proof). Reported: error count, throughput, p50 / p99 latency as the client saw it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from tests.scale.idp_process import IdPProcess
from tests.scale.procs import running

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/14"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def _pg(sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _drive(
    count: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    queue = iter(range(count))

    async def worker() -> None:
        nonlocal errors
        for index in queue:
            start = time.perf_counter()
            try:
                await one(index)
                latencies.append(time.perf_counter() - start)
            except Exception:  # noqa: BLE001 - every failure is counted, none hidden
                errors += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - began


def _row(name: str, latencies: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies) or [0.0]
    return {
        "phase": name,
        "ok": len(latencies),
        "errors": errors,
        "per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1e3, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 2),
    }


def run(mints: int, requests: int) -> dict[str, Any]:
    use_pg = _reachable(5432)
    database = "ajwt_load_" + secrets.token_hex(4)
    with tempfile.TemporaryDirectory() as tmp:
        if use_pg:
            asyncio.run(_pg(f'CREATE DATABASE "{database}"'))
            parts = urlsplit(POSTGRES_URL)
            db_url = urlunsplit(parts._replace(path=f"/{database}"))
        else:
            db_url = f"sqlite:///{tmp}/idp.db"
        idp = IdPProcess(db_url, Path(tmp) / "keys.json", workers=2 if use_pg else 1)
        idp.start()
        try:
            redis = REDIS_URL if _reachable(6379) else ""

            def env(url: str) -> dict[str, str]:
                return {
                    "AJWT_RS_ISSUER": idp.url,
                    "AJWT_RS_AUDIENCE": url,
                    "AJWT_RS_REDIS_URL": redis,
                }

            with running(
                "ajwt_demo.asgi:api_from_env", env, workers=2, ready_path="/health"
            ) as api:
                shim = idp.setup_client()
                admin = idp.admin()
                runs = [
                    shim.start_run(admin.user_token(f"user:{i}"), "vuln-patch") for i in range(20)
                ]
                admin.close()

                async def mint(index: int) -> None:
                    run = runs[index % len(runs)]
                    async with shim.aacting("supervisor", tool="list_repos", run=run) as context:
                        await shim.atoken(context, f"https://load-{index}.example")

                async def call_api(client: httpx.AsyncClient) -> Callable[[int], Awaitable[None]]:
                    async def one(index: int) -> None:
                        async with shim.aacting(
                            "supervisor", tool="list_repos", run=runs[index % len(runs)]
                        ):
                            response = await client.get("/repos")
                        response.raise_for_status()

                    return one

                async def main() -> tuple[dict[str, Any], dict[str, Any]]:
                    mint_stats = _row("IdP mints", *await _drive(mints, 20, mint))
                    limits = httpx.Limits(max_connections=50)
                    async with httpx.AsyncClient(
                        base_url=api.url, auth=shim.auth(), limits=limits, timeout=30
                    ) as client:
                        calls = _row(
                            "API requests", *await _drive(requests, 50, await call_api(client))
                        )
                    return mint_stats, calls

                mint_row, api_row = asyncio.run(main())
        finally:
            idp.stop()
            if use_pg:
                asyncio.run(_pg(f'DROP DATABASE "{database}" WITH (FORCE)'))
    return {
        "setup": {
            "idp": "2 workers on PostgreSQL" if use_pg else "1 worker on SQLite",
            "api": "2 workers, Redis replay cache" if redis else "2 workers, in-memory replay",
        },
        "rows": [mint_row, api_row],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mints", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.mints, args.requests)
    print(f"IdP: {result['setup']['idp']}; API: {result['setup']['api']}")
    print("| phase | ok | errors | per second | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in result["rows"]:
        print(
            f"| {row['phase']} | {row['ok']} | {row['errors']} | {row['per_second']} "
            f"| {row['p50_ms']} | {row['p99_ms']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if all(row["errors"] == 0 for row in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
