"""Issue 8: one captured request sent 500 times at once to 4 resource-server workers
sharing Redis: exactly one is accepted, 499 are refused as replays."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
import redis

from ajwt_core.dpop import create_proof
from ajwt_demo.stack import Stack
from tests.redis_support import seed_replay_epoch
from tests.scale.procs import running
from tests.services import REDIS, REDIS_URL, require

pytestmark = pytest.mark.heavy


def test_same_request_500_times_to_4_workers_is_accepted_once(stack: Stack) -> None:
    require("Redis", REDIS)
    # The workers' replay cache (the default prefix on the shared Redis) as one that has
    # run longer than proofs live: a fresh one refuses proofs of its first seconds
    # (replay_state_reset), as it must after a wipe, and the machine's Redis may be new.
    client = redis.Redis.from_url(REDIS_URL)
    seed_replay_epoch(client)
    client.close()

    def env(url: str) -> dict[str, str]:
        return {
            "AJWT_RS_ISSUER": stack.idp_url,
            "AJWT_RS_AUDIENCE": url,
            "AJWT_RS_REDIS_URL": REDIS_URL,
        }

    with running("ajwt_demo.asgi:api_from_env", env, workers=4, ready_path="/health") as api:
        shim = stack.shim()
        run = stack.start_run(shim)
        with shim.acting("supervisor", tool="list_repos", run=run) as context:
            token = shim.token(context, api.url).token
        proof = create_proof(
            shim.agent("supervisor").key, "GET", api.url + "/repos", token=token, body=b""
        )
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof, "X-Try": ""}

        async def storm() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=100)
            async with httpx.AsyncClient(limits=limits, timeout=30) as http:
                # Many connections, so the kernel spreads them over the workers.
                return await asyncio.gather(
                    *(
                        http.get(api.url + "/repos", headers=headers | {"X-Try": str(i)})
                        for i in range(500)
                    )
                )

        responses = asyncio.run(storm())
    outcomes = Counter(
        r.status_code if r.status_code == 200 else r.json().get("ajwt_reason") for r in responses
    )
    assert outcomes == {200: 1, "replayed": 499}, outcomes
