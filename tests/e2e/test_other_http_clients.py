"""``Shim.headers_for``: a tool on an HTTP client other than httpx (here the standard
library's ``urllib``) sends the acting agent's token and a proof bound to the request,
which the resource server accepts; a replayed header set, another body or a call
outside any tool is refused."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from ajwt_core.errors import AgentContextError, Reason
from ajwt_core.shim import ShimEvent
from ajwt_demo.agents import reference_manifests
from ajwt_demo.stack import CountingShim, Stack

PR = json.dumps({"title": "Bump lodash to 4.17.21", "head": "fix/lodash"}).encode()


def send(method: str, url: str, headers: dict[str, str], body: bytes | None = None) -> Any:
    """The answer's status and JSON body (an HTTP error's too)."""
    extra = {"Content-Type": "application/json"} if body is not None else {}
    # The test stack's own http:// URL.
    request = urllib.request.Request(url, data=body, method=method, headers=headers | extra)  # noqa: S310
    try:
        with urllib.request.urlopen(request) as answer:  # noqa: S310
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def test_urllib_calls_carry_the_acting_agents_token_and_proof(stack: Stack) -> None:
    shim = stack.shim()
    events: list[ShimEvent] = []
    shim.subscribe(events.append)
    url = stack.rs_url + "/repos"
    with shim.run(stack.start_run(shim)):
        with shim.acting("supervisor", tool="list_repos"):
            headers = shim.headers_for("GET", url)
            status, body = send("GET", url, headers)
            assert status == 200, body
            assert (body["caller"]["agent"], body["caller"]["tool"]) == ("supervisor", "list_repos")
            # Told the answer, the shim tells its observers, as its httpx auth does.
            shim.answered(status)
            [accepted] = [e for e in events if e.kind == "api_accepted"]
            assert (accepted.agent, accepted.step, accepted.detail) == (
                "supervisor",
                "triage",
                {"status": 200},
            )
            # The proof was single use: the same headers again are a replay.
            status, body = send("GET", url, headers)
            assert (status, body["ajwt_reason"]) == (401, Reason.REPLAYED.value)
            shim.answered(status, 'DPoP error="invalid_dpop_proof", ajwt_reason="replayed"')
            [refused] = [e for e in events if e.kind == "api_refused"]
            assert refused.detail["reason"] == "replayed"
            # Headers for one URL do not serve another.
            other = stack.rs_url + "/advisories"
            status, body = send("GET", other, shim.headers_for("GET", url))
            assert (status, body["ajwt_reason"]) == (401, Reason.URL_MISMATCH.value)
            with pytest.raises(TypeError, match=r"body=text\.encode\(\)"):
                shim.headers_for("POST", url, body='{"a": 1}')  # type: ignore[arg-type]
        with pytest.raises(AgentContextError) as outside:
            shim.headers_for("GET", url)
        assert outside.value.reason == Reason.NO_AGENT_CONTEXT


def test_a_body_is_bound_to_its_proof(stack: Stack) -> None:
    shim = stack.shim()
    url = stack.rs_url + "/repos/acme/storefront/pulls"
    run = stack.start_run(shim)
    with shim.run(run):
        # The workflow's order up to the step that opens pull requests.
        for agent, step in (("supervisor", None), ("planner", "plan"), ("classifier", "classify")):
            if step is not None:
                shim.handoff("supervisor", agent, step)
            shim.complete(agent)
        shim.handoff("supervisor", "patcher", "patch")
        with shim.acting("patcher", tool="create_pull_request"):
            swapped = shim.headers_for("POST", url, body=b'{"title": "other"}')
            status, body = send("POST", url, swapped, PR)
            assert (status, body["ajwt_reason"]) == (401, Reason.BODY_HASH_MISMATCH.value)

            async def signed() -> dict[str, str]:
                return await shim.aheaders_for("POST", url, body=PR)

            status, body = send("POST", url, asyncio.run(signed()), PR)
            assert status == 201, body
            assert body["caller"]["chain"] == ["supervisor", "patcher"]


def test_telling_an_answer_asks_nothing_of_the_idp_even_in_a_completed_step(
    stack: Stack,
) -> None:
    client = stack.new_client()
    shim = CountingShim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    shim.register_many(reference_manifests())
    url = stack.rs_url + "/repos"
    run = stack.start_run(shim)
    with shim.run(run):
        shim.complete("supervisor", "triage")
        with shim.acting("supervisor", tool="list_repos"):
            shim.sent.clear()
            status, body = send("GET", url, shim.headers_for("GET", url))
            assert status == 200, body
            assert dict(shim.sent) == {"token": 1}  # the call re-enters the step: minted
            shim.answered(status)
            assert dict(shim.sent) == {"token": 1}  # telling its answer is not
        with pytest.raises(AgentContextError) as outside:
            shim.answered(200)
        assert outside.value.reason == Reason.NO_AGENT_CONTEXT
