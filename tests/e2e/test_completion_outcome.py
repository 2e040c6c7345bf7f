"""A completion whose answer never reached the shim (the task cancelled, the connection
lost after the IdP acted): the IdP may have completed the step, so later calls in it are
asked of the IdP and recorded as re-entries, never served from the token cache (DESIGN
§6: every call made after a step's completion is checked and in the ledger). A refusal
means the IdP recorded nothing: the step's cached tokens are still served."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ajwt_core.errors import AJWTError, Reason, ServerError
from ajwt_core.shim import Run, Shim
from ajwt_core.shim import client as shim_client
from ajwt_demo.stack import Stack


def _entries(stack: Stack, run: Run) -> int:
    return len(stack.admin.ledger(run.run_id)["entries"])


def _kinds(stack: Stack, run: Run) -> list[str]:
    return [entry["kind"] for entry in stack.admin.ledger(run.run_id)["entries"]]


class _AnswerHeldBack(httpx.AsyncHTTPTransport):
    """Forwards every request; the answer to a token exchange is held back until the
    test cancels its caller (the IdP has acted by then)."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.url.path == "/token" and b"token-exchange" in request.content:
            await response.aread()
            self.answered.set()
            await asyncio.sleep(30)
        return response


def test_a_hand_off_cancelled_after_the_idp_acted_leaves_no_call_served_from_the_cache(
    stack: Stack,
) -> None:
    transport = _AnswerHeldBack()
    shim = stack.shim(default_audience=stack.rs_url, async_transport=transport)
    run = stack.start_run(shim)

    async def main() -> list[int]:
        statuses = []
        async with httpx.AsyncClient(auth=shim.auth(), base_url=stack.rs_url) as api:
            with shim.run(run):
                with shim.acting("supervisor", tool="list_repos"):
                    assert (await api.get("/repos")).status_code == 200  # its token cached
                handoff = asyncio.create_task(
                    shim.ahandoff("supervisor", "planner", "plan", complete=True)
                )
                await transport.answered.wait()
                handoff.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await handoff
                assert _kinds(stack, run)[-4:-2] == ["step_completed", "delegation"]
                assert "triage" not in shim.completed_steps(run)  # the answer never came
                before = _entries(stack, run)
                with shim.acting("supervisor", tool="list_repos"):
                    for _ in range(2):
                        statuses.append((await api.get("/repos")).status_code)
                # Each call was asked of the IdP: a re-entry of the completed step, each
                # recorded (it was served from the cache, unrecorded, before).
                assert _entries(stack, run) - before == 2
                assert _kinds(stack, run)[-2:] == ["token_minted", "token_minted"]
        return statuses

    try:
        assert asyncio.run(main()) == [200, 200]
    finally:
        shim._deferred.clear()
        shim.close()


class _LostAfterCompletion(httpx.HTTPTransport):
    """Forwards every request; a step completion's answer is lost on the way back (the
    IdP has recorded it), or, with ``refuse``, is refused without reaching the IdP."""

    def __init__(self, *, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        completing = request.url.path.endswith("/complete")
        if completing and self.refuse:
            body: dict[str, Any] = {
                "error": "invalid_grant",
                "error_description": "the step cannot be completed now",
                "ajwt_reason": Reason.DEPENDENCIES_INCOMPLETE.value,
            }
            return httpx.Response(400, json=body, request=request)
        response = super().handle_request(request)
        if completing:
            response.read()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


@pytest.mark.parametrize("refuse", [False, True], ids=["answer lost", "refused"])
def test_a_completion_without_an_answer_sends_later_calls_to_the_idp_and_a_refusal_does_not(
    stack: Stack, refuse: bool
) -> None:
    shim: Shim = stack.shim(
        default_audience=stack.rs_url, transport=_LostAfterCompletion(refuse=refuse)
    )
    run = stack.start_run(shim)
    try:
        with (
            shim.run(run),
            httpx.Client(auth=shim.auth(), base_url=stack.rs_url) as api,
        ):
            with shim.acting("supervisor", tool="list_repos"):
                assert api.get("/repos").status_code == 200
            with pytest.raises(AJWTError) as raised:
                shim.complete("supervisor", "triage")
            before = _entries(stack, run)
            with shim.acting("supervisor", tool="list_repos"):
                assert api.get("/repos").status_code == 200
            if refuse:
                # Refused: nothing was recorded, the step is open, its token still served.
                assert raised.value.reason is Reason.DEPENDENCIES_INCOMPLETE
                assert _entries(stack, run) == before
            else:
                assert isinstance(raised.value, ServerError)
                assert raised.value.reason is Reason.IDP_UNREACHABLE
                assert _kinds(stack, run)[before - 1 :] == ["step_completed", "token_minted"]
    finally:
        shim.close()


def test_a_completion_left_unknown_and_forgotten_takes_its_steps_cached_tokens_with_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shim keeps a bounded number of completions whose outcome it never learnt. One
    # forgotten while its step's token was still cached would have let that token serve
    # calls after a completion the IdP may have recorded: the tokens go with it.
    monkeypatch.setattr(shim_client, "_COMPLETED_RUNS_MAX", 1)
    shim: Shim = stack.shim(default_audience=stack.rs_url, transport=_LostAfterCompletion())
    first, second = stack.start_run(shim), stack.start_run(shim)
    try:
        with httpx.Client(auth=shim.auth(), base_url=stack.rs_url) as api:
            for run in (first, second):
                with shim.run(run):
                    with shim.acting("supervisor", tool="list_repos"):
                        assert api.get("/repos").status_code == 200
                    with pytest.raises(ServerError):
                        shim.complete("supervisor", "triage")  # `first` forgotten here
            # Each call in either run's step is asked of the IdP and recorded.
            for run in (first, second):
                before = _entries(stack, run)
                with shim.run(run), shim.acting("supervisor", tool="list_repos"):
                    assert api.get("/repos").status_code == 200
                assert _kinds(stack, run)[before:] == ["token_minted"]
    finally:
        shim.close()
