"""Step completions deferred to the run's next token request (DESIGN §6.7): each proven
by its agent's key as the completion endpoint requires, recorded in a transaction of its
own before the grant, its outcome in the answer; what is left is sent when the
``shim.run`` block ends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from ajwt_core.errors import AJWTError, InvalidGrant, Reason
from ajwt_core.ledger import load_json
from ajwt_core.shim import Run, Shim, ShimEvent
from ajwt_core.shim.client import AGENT_CHECKSUM_GRANT
from ajwt_core.shim.token_cache import TokenCache
from ajwt_demo.agents import reference_manifests
from ajwt_demo.stack import CountingShim, Stack


class CarryingShim(CountingShim):
    """Keeps the ``completions`` parameter of each token request it sends."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.carried: list[list[dict[str, str]]] = []

    def _roundtrip_sync(self, client: httpx.Client, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            form = parse_qs(request.content.decode())
            if "completions" in form:
                self.carried.append(json.loads(form["completions"][0]))
        return super()._roundtrip_sync(client, request)


@pytest.fixture
def shim(stack: Stack) -> Iterator[CarryingShim]:
    client = stack.new_client()
    the_shim = CarryingShim(
        stack.idp_url, client["client_id"], client_secret=client["client_secret"]
    )
    the_shim.register_many(reference_manifests())
    yield the_shim
    the_shim.close()


def _ledger(shim: Shim, run: Run) -> list[tuple[str, dict[str, Any]]]:
    with httpx.Client() as http:
        response = http.send(shim._json_request("GET", f"/runs/{run.run_id}/ledger"))
    return [(entry["kind"], entry["data"]) for entry in load_json(response.content)]


def _completed(shim: Shim, run: Run) -> list[str]:
    return [data["step"] for kind, data in _ledger(shim, run) if kind == "step_completed"]


def _planning(stack: Stack, shim: Shim) -> Run:
    """A run in which the planner acts in ``plan`` (``triage`` completed)."""
    run = shim.start_run(stack.admin.user_token("user:alice"), "vuln-patch")
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        shim.token(context, stack.rs_url)
    shim.handoff("supervisor", "planner", "plan", run=run, audience=stack.rs_url, complete=True)
    return run


def _answer(value: Any) -> Iterator[Any]:
    """An operation that sends nothing and answers ``value``."""
    return value  # type: ignore[no-any-return]
    yield  # a generator


def _events(shim: Shim) -> list[ShimEvent]:
    seen: list[ShimEvent] = []
    shim.subscribe(seen.append)
    return seen


def test_a_deferred_completion_rides_on_the_next_token_request(
    stack: Stack, shim: CarryingShim
) -> None:
    run = _planning(stack, shim)
    seen = _events(shim)
    with shim.run(run):
        shim.sent.clear()
        answer = shim.complete("planner", "plan", defer=True)
        assert answer == {"run_id": run.run_id, "step": "plan", "deferred": True}
        assert dict(shim.sent) == {}  # no round trip of its own
        assert "plan" in shim.completed_steps(run)  # the shim's copy moved
        assert "plan" not in _completed(shim, run)  # the IdP's not yet
        assert shim.deferred(run) == [("planner", "plan")]
        shim.handoff("planner", "classifier", "classify", audience=stack.rs_url)
        assert dict(shim.sent) == {"token": 1}
        assert shim.deferred() == []
    assert dict(shim.sent) == {"token": 1}  # nothing left to flush
    assert [item["step"] for item in shim.carried[-1]] == ["plan"]
    kinds = [kind for kind, _ in _ledger(shim, run)]
    # Recorded before the delegation that carried it.
    assert kinds[-4:] == ["step_completed", "delegation", "step_entered", "token_minted"]
    assert _completed(shim, run) == ["triage", "plan"]
    # Told once, when the IdP recorded it.
    assert [e.step for e in seen if e.kind == "step_completed"] == ["plan"]


def test_the_end_of_the_run_block_sends_what_no_request_carried(
    stack: Stack, shim: CarryingShim
) -> None:
    run = _planning(stack, shim)
    with shim.run(run):
        shim.complete("planner", "plan", defer=True)
        shim.sent.clear()
    assert dict(shim.sent) == {"complete": 1}
    assert _completed(shim, run) == ["triage", "plan"]
    assert shim.deferred() == []


def test_outside_a_run_block_defer_completes_now(stack: Stack, shim: CarryingShim) -> None:
    run = _planning(stack, shim)
    shim.sent.clear()
    answer = shim.complete("planner", "plan", run=run, defer=True)
    assert "deferred" not in answer
    assert dict(shim.sent) == {"complete": 1}
    assert _completed(shim, run) == ["triage", "plan"]


def test_a_completion_proven_by_another_key_is_refused_and_the_grant_still_passes(
    stack: Stack, shim: CarryingShim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Attack: a completion carried with a token that is not the prover's (the
    # supervisor's token, a proof by the planner's key). Legitimate: the hand-off it
    # rides on is still granted.
    run = _planning(stack, shim)
    supervisor = shim._latest_token("supervisor", run, "triage")
    assert supervisor is not None
    seen = _events(shim)
    with shim.run(run):
        shim.complete("planner", "plan", defer=True)
        monkeypatch.setattr(shim, "_op_proof_token", lambda item: _answer(supervisor))
        issued = shim.handoff("planner", "classifier", "classify", audience=stack.rs_url)
    assert issued.step == "classify"
    refused = [e for e in seen if e.kind == "completion_refused"]
    assert [(e.step, e.detail["reason"]) for e in refused] == [("plan", Reason.KEY_NOT_BOUND)]
    assert refused[0].detail["deferred"] is True
    # Not recorded as the planner's completion: the hand-off from ``plan`` completed it
    # implicitly, as it does without a carried completion.
    plan = [data for kind, data in _ledger(shim, run) if kind == "step_completed"][-1]
    assert plan["step"] == "plan" and plan.get("implicit") is True and "jti" not in plan


def test_a_carried_proof_cannot_be_used_again_at_the_completion_endpoint(
    stack: Stack, shim: CarryingShim
) -> None:
    run = _planning(stack, shim)
    with shim.run(run):
        shim.complete("planner", "plan", defer=True)
        shim.handoff("planner", "classifier", "classify", audience=stack.rs_url)
    (carried,) = shim.carried[-1]
    request = shim._json_request("POST", f"/runs/{run.run_id}/steps/plan/complete")
    request.headers["X-AJWT-Token"] = f"DPoP {carried['token']}"
    request.headers["DPoP"] = carried["proof"]
    with httpx.Client() as http:
        answer = http.send(request)
    assert answer.status_code == 401
    assert answer.json()["ajwt_reason"] == Reason.REPLAYED


def test_a_completion_of_another_run_is_refused(stack: Stack, shim: CarryingShim) -> None:
    # A completion rides only on a token request of its own run: the planner's token of
    # run A, carried on a token request of run B, is refused.
    first = _planning(stack, shim)
    second = _planning(stack, shim)
    seen = _events(shim)
    with shim.run(first):
        shim.complete("planner", "plan", defer=True)
    with shim.run(second):
        shim.complete("planner", "plan", defer=True)
        pending = shim._deferred[second.run_id]
        shim._deferred[second.run_id] = [
            type(pending[0])(pending[0].agent, "plan", first, pending[0].checksum)
        ]
        shim.handoff("planner", "classifier", "classify", audience=stack.rs_url)
        assert shim.deferred() == []
    refused = [e for e in seen if e.kind == "completion_refused"]
    assert [(e.run_id, e.detail["reason"]) for e in refused] == [
        (first.run_id, Reason.INVALID_CLAIM)
    ]


@pytest.mark.parametrize(
    "completions",
    [
        "not json",
        "[]",
        '[{"step": "plan"}]',
        json.dumps([{"step": "p", "token": "t", "proof": "p"}] * 9),
    ],
)
def test_a_malformed_completions_parameter_is_an_invalid_request(
    stack: Stack, shim: CarryingShim, completions: str
) -> None:
    run = _planning(stack, shim)
    supervisor = shim.agent("supervisor")
    form = {
        "grant_type": AGENT_CHECKSUM_GRANT,
        "agent_id": "supervisor",
        "agent_checksum": supervisor.checksum,
        "run_id": run.run_id,
        "step": "triage",
        "completions": completions,
    }
    with httpx.Client() as http:
        answer = http.send(shim._token_request(form, supervisor.key))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert answer.json()["ajwt_reason"] == Reason.MALFORMED_REQUEST
    assert "'completions'" in answer.json()["error_description"]


def test_a_refused_grant_keeps_the_completion_it_carried(stack: Stack, shim: CarryingShim) -> None:
    # The completion has its own transaction: recorded although the hand-off it rode on
    # is refused (the delegate's registration revoked); the shim sends it again at the
    # block's end and the IdP answers it was already completed.
    run = _planning(stack, shim)
    shim.revoke("agent", shim.agent("classifier").registration_id)
    with shim.run(run):
        shim.complete("planner", "plan", defer=True)
        with pytest.raises(InvalidGrant) as info:
            shim.handoff("planner", "classifier", "classify", audience=stack.rs_url)
        assert info.value.reason == Reason.AGENT_REVOKED
        assert shim.deferred(run) == [("planner", "plan")]
        shim.sent.clear()
    assert dict(shim.sent) == {"complete": 1}
    assert _completed(shim, run) == ["triage", "plan"]


def test_an_expired_proof_token_is_replaced_by_a_fresh_step_token(
    stack: Stack, shim: CarryingShim
) -> None:
    run = _planning(stack, shim)
    with shim.run(run):
        shim.complete("planner", "plan", defer=True)
        shim._tokens = TokenCache()  # as if every token of the run had expired meanwhile
        shim.sent.clear()
        shim.handoff("supervisor", "classifier", "classify", audience=stack.rs_url)
        # A step token for the planner (carrying nothing), a step token for the
        # supervisor's hand-off, then the exchange carrying the completion.
        assert shim.sent["token"] == 3
    assert "plan" in _completed(shim, run)


def test_a_routing_step_handed_on_costs_one_step_token_and_the_exchange(
    stack: Stack, shim: CarryingShim
) -> None:
    # A router (no tool, no token in its step yet) finished: its completion is deferred,
    # then it hands on. Its step token proves both the completion and the hand-off.
    run = shim.start_run(stack.admin.user_token("user:alice"), "vuln-patch")
    with shim.run(run):
        shim.complete("supervisor", "triage", defer=True)
        shim.sent.clear()
        shim.handoff("supervisor", "planner", "plan", audience=stack.rs_url)
        assert dict(shim.sent) == {"token": 2}  # the step token, then the exchange
        assert shim.deferred() == []
    assert [item["step"] for item in shim.carried[-1]] == ["triage"]
    ledger = _ledger(shim, run)
    minted = [d for kind, d in ledger if kind == "token_minted" and d["agent"] == "supervisor"]
    assert len(minted) == 1
    assert _completed(shim, run) == ["triage"]
    kinds = [kind for kind, _ in ledger]
    assert kinds.index("step_completed") < kinds.index("delegation")


def test_a_tool_call_in_a_completed_step_is_asked_of_the_idp_not_the_cache(
    stack: Stack, shim: CarryingShim
) -> None:
    run = shim.start_run(stack.admin.user_token("user:alice"), "vuln-patch")
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        first = shim.token(context, stack.rs_url)
        assert shim.token(context, stack.rs_url).token == first.token  # the step is open
    shim.complete("supervisor", "triage", run=run)
    shim.sent.clear()
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        again = shim.token(context, stack.rs_url)
    # The call re-enters the completed step: the IdP checks it and the ledger has it.
    assert again.token != first.token and dict(shim.sent) == {"token": 1}
    kinds = [kind for kind, _ in _ledger(shim, run)]
    assert kinds[-2:] == ["step_completed", "token_minted"]


def test_a_tool_call_in_a_completed_step_is_minted_once_not_at_start_and_again_at_its_call(
    stack: Stack, shim: CarryingShim
) -> None:
    # A framework's tool gate prepares the call (minting up front for the default
    # audience) and the call's request binds a token: in a completed step that is one
    # IdP request and one ledger entry, not two.
    shim.default_audience = stack.rs_url
    run = shim.start_run(stack.admin.user_token("user:alice"), "vuln-patch")
    with httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http:
        for completed in (False, True):
            if completed:
                shim.complete("supervisor", "triage", run=run)
            shim.sent.clear()
            context = shim.prepare(shim.context("supervisor", tool="list_repos", run=run))
            with shim.acting("supervisor", step=context.step, tool=context.tool, run=run):
                assert http.get("/repos").status_code == 200
            shim.tool_finished(context)
            assert dict(shim.sent) == {"token": 1}, completed
    kinds = [kind for kind, _ in _ledger(shim, run)]
    assert kinds[-2:] == ["step_completed", "token_minted"]


def test_an_idp_that_ignores_completions_gets_them_on_their_own(
    stack: Stack, shim: CarryingShim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An IdP from before carried completions answers without ``ajwt_completions``: the
    # shim keeps them and sends them when the block ends.
    check = Shim._check

    def older(response: httpx.Response) -> Any:
        answer = check(response)
        if isinstance(answer, dict):
            answer.pop("ajwt_completions", None)
        return answer

    run = _planning(stack, shim)
    with shim.run(run):
        shim.complete("planner", "plan", defer=True)
        monkeypatch.setattr(shim, "_check", older)
        shim.handoff("planner", "classifier", "classify", audience=stack.rs_url)
        assert shim.deferred(run) == [("planner", "plan")]
        shim.sent.clear()
    assert dict(shim.sent) == {"complete": 1}
    assert _completed(shim, run) == ["triage", "plan"]


def test_closing_the_shim_sends_what_is_left(stack: Stack, shim: CarryingShim) -> None:
    # A block left by ``close`` inside it (a worker shutting down mid-run): nothing
    # deferred is lost.
    run = _planning(stack, shim)
    with shim.run(run):
        shim.complete("planner", "plan", defer=True)
        shim.close()
        assert shim.deferred() == []
    assert _completed(shim, run) == ["triage", "plan"]


async def test_async_defer_and_flush(stack: Stack, shim: CarryingShim) -> None:
    run = _planning(stack, shim)
    with shim.run(run):
        answer = await shim.acomplete("planner", "plan", defer=True)
        assert answer["deferred"] is True
        (sent,) = await shim.aflush(run)
        assert sent["step"] == "plan"
        assert shim.deferred() == []
    assert _completed(shim, run) == ["triage", "plan"]


def test_a_refusal_when_the_block_ends_is_raised_there(stack: Stack, shim: CarryingShim) -> None:
    run = _planning(stack, shim)
    seen = _events(shim)
    with pytest.raises(AJWTError) as info, shim.run(run):  # noqa: PT012 - its end raises
        shim.complete("planner", "plan", defer=True)
        shim.revoke("run", run.run_id)
    assert info.value.reason == Reason.RUN_REVOKED
    refused = [e for e in seen if e.kind == "completion_refused"]
    assert [(e.step, e.detail["reason"]) for e in refused] == [("plan", Reason.RUN_REVOKED)]
    assert "plan" not in shim.completed_steps(run)
    assert shim.deferred() == []


def test_a_completion_its_agent_cannot_prove_is_refused_on_its_own(
    stack: Stack, shim: CarryingShim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The planner changed after it completed (its proof token cannot be minted): its
    # completion is refused with that reason and is not sent; the supervisor's hand-off
    # gets the IdP's own answer: ``classify`` waits for ``plan``, which is not complete.
    run = _planning(stack, shim)
    seen = _events(shim)

    def changed(item: Any) -> Iterator[Any]:
        raise InvalidGrant(Reason.CHECKSUM_MISMATCH, "agent 'planner' changed")
        yield  # a generator

    with shim.run(run):
        shim.complete("planner", "plan", defer=True)
        monkeypatch.setattr(shim, "_op_proof_token", changed)
        with pytest.raises(InvalidGrant) as info:
            shim.handoff("supervisor", "classifier", "classify", audience=stack.rs_url)
        assert shim.deferred() == []
    assert info.value.reason == Reason.DEPENDENCIES_INCOMPLETE
    refused = [e for e in seen if e.kind == "completion_refused"]
    assert [(e.step, e.detail["reason"]) for e in refused] == [("plan", Reason.CHECKSUM_MISMATCH)]
    assert shim.carried == []  # nothing was left to carry
    assert "plan" not in _completed(shim, run)
