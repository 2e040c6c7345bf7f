"""A hand-off that also completes the delegator's step, in one request (DESIGN §6.7):
the checks of the completion endpoint and of the token exchange both apply, each refusal
with its reason, and the IdP records both or neither."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ajwt_core.errors import AJWTError, InvalidGrant, Reason
from ajwt_core.keys import PopKey
from ajwt_core.ledger import load_json
from ajwt_core.shim import Run, Shim, ShimEvent
from ajwt_core.tokens import DelegationClaims
from ajwt_core.workflow import reference_workflow
from ajwt_demo.agents import reference_manifests
from ajwt_demo.stack import CountingShim, Stack

#: The planner's ``plan`` leads to ``patch`` through ``review``, but ``patch`` waits for
#: ``classify`` or ``review`` only: handing ``patch`` on from ``plan`` does not complete
#: ``plan`` by itself. ``plan`` may consult the classifier.
BRANCHY = "handoff-completion"


def _branchy() -> dict[str, Any]:
    definition = reference_workflow().canonical()
    steps = definition["steps"]
    definition["id"] = BRANCHY
    steps["classify"]["after"] = ["triage"]
    steps["review"] = {
        "agent": "planner",
        "tools": ["read_file"],
        "scopes": ["repo:read"],
        "after": ["plan"],
    }
    del steps["patch"]["after"]
    steps["patch"]["after_any"] = ["classify", "review"]
    steps["plan"]["consult"] = {
        "classifier": {"tools": ["query_advisories"], "scopes": ["advisories:read"]}
    }
    return definition


@pytest.fixture(scope="module")
def branchy(stack: Stack) -> str:
    stack.admin.register_workflow(_branchy())
    return BRANCHY


@pytest.fixture
def shim(stack: Stack) -> Iterator[CountingShim]:
    the_shim = stack.new_shim()
    the_shim.register_many(reference_manifests())
    yield the_shim
    the_shim.close()


def _ledger(stack: Stack, shim: Shim, run: Run) -> list[tuple[str, dict[str, Any]]]:
    with httpx.Client() as http:
        response = http.send(shim._json_request("GET", f"/runs/{run.run_id}/ledger"))
    return [(entry["kind"], entry["data"]) for entry in load_json(response.content)]


def _completed(stack: Stack, shim: Shim, run: Run) -> list[str]:
    return [d["step"] for k, d in _ledger(stack, shim, run) if k == "step_completed"]


def _to_plan(stack: Stack, shim: Shim, workflow: str) -> Run:
    """A run in which the planner acts in ``plan`` and the classifier completed
    ``classify``."""
    run = shim.start_run(stack.admin.user_token("user:alice"), workflow)
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        shim.token(context, stack.rs_url)
    shim.handoff("supervisor", "planner", "plan", run=run, audience=stack.rs_url)
    shim.handoff("supervisor", "classifier", "classify", run=run, audience=stack.rs_url)
    shim.complete("classifier", "classify", run=run)
    return run


def test_handoff_completes_the_delegators_step_in_the_same_request(
    stack: Stack, shim: CountingShim, branchy: str
) -> None:
    run = _to_plan(stack, shim, branchy)
    shim.sent.clear()
    issued = shim.handoff(
        "planner", "patcher", "patch", run=run, audience=stack.rs_url, complete=True
    )
    assert issued.step == "patch"
    assert dict(shim.sent) == {"token": 1}  # one round trip: no /complete
    assert "plan" in _completed(stack, shim, run)
    assert "plan" in shim.completed_steps(run)
    kinds = [kind for kind, _ in _ledger(stack, shim, run)]
    # The completion is recorded before the delegation it came with.
    assert kinds[-4:] == ["step_completed", "delegation", "step_entered", "token_minted"]


def test_without_complete_the_delegators_step_stays_open(
    stack: Stack, shim: CountingShim, branchy: str
) -> None:
    run = _to_plan(stack, shim, branchy)
    shim.handoff("planner", "patcher", "patch", run=run, audience=stack.rs_url)
    assert "plan" not in _completed(stack, shim, run)


def test_implicit_completion_is_not_recorded_twice(stack: Stack, shim: CountingShim) -> None:
    # ``plan`` waits for ``triage``: the exchange completes it anyway, and ``complete``
    # adds nothing.
    run = shim.start_run(stack.admin.user_token("user:alice"), "vuln-patch")
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        shim.token(context, stack.rs_url)
    shim.sent.clear()
    shim.handoff("supervisor", "planner", "plan", run=run, audience=stack.rs_url, complete=True)
    assert dict(shim.sent) == {"token": 1}
    assert _completed(stack, shim, run) == ["triage"]


def test_refused_delegate_leaves_the_delegators_step_open(
    stack: Stack, shim: CountingShim, branchy: str
) -> None:
    # Atomic: the delegate's token is refused (its registration revoked), so the
    # completion that came with the hand-off is not recorded either.
    run = _to_plan(stack, shim, branchy)
    refusals: list[ShimEvent] = []
    shim.subscribe(lambda event: refusals.append(event) if "refused" in event.kind else None)
    shim.revoke("agent", shim.agent("patcher").registration_id)
    with pytest.raises(InvalidGrant) as info:
        shim.handoff("planner", "patcher", "patch", run=run, audience=stack.rs_url, complete=True)
    assert info.value.reason == Reason.AGENT_REVOKED
    assert "plan" not in _completed(stack, shim, run)
    assert "plan" not in shim.completed_steps(run)
    # The observers were told, whatever the caller does with the exception.
    [told] = refusals
    assert (told.kind, told.agent, told.step, told.run_id) == (
        "handoff_refused",
        "patcher",
        "patch",
        run.run_id,
    )
    assert told.detail["from_agent"] == "planner"
    assert (told.detail["error"], told.detail["reason"]) == ("invalid_grant", "agent_revoked")
    # The step is still the planner's to complete on its own.
    assert shim.complete("planner", "plan", run=run)["step"] == "plan"
    with pytest.raises(AJWTError) as again:
        shim.complete("patcher", "patch", run=run)
    assert refusals[-1].kind == "completion_refused"
    assert refusals[-1].detail["reason"] == again.value.reason.value


def _unchecked(stack: Stack, shim: Shim) -> Shim:
    """The same client and agents without the shim's local checks: the IdP decides."""
    client_id = shim.client_id
    other = Shim(
        stack.idp_url,
        client_id,
        client_secret=shim._client_secret,
        master_secret=shim._master,
        local_checks=False,
    )
    other._agents = shim._agents
    return other


def test_consultation_cannot_complete_the_step(
    stack: Stack, shim: CountingShim, branchy: str
) -> None:
    run = _to_plan(stack, shim, branchy)
    # The shim refuses before sending...
    with pytest.raises(InvalidGrant) as local:
        shim._send_sync(
            shim._op_handoff(
                "planner", "classifier", None, run, None, None, None, "plan", complete=True
            )
        )
    assert local.value.reason == Reason.INVALID_DELEGATION
    # ... and so does the IdP.
    unchecked = _unchecked(stack, shim)
    with pytest.raises(InvalidGrant) as info:
        unchecked._send_sync(
            unchecked._op_handoff(
                "planner", "classifier", None, run, None, None, None, "plan", complete=True
            )
        )
    assert info.value.reason == Reason.INVALID_DELEGATION
    assert "plan" not in _completed(stack, shim, run)
    # The same consultation without ``complete`` passes, and plan stays open.
    assert shim.consult("planner", "classifier", run=run, from_step="plan").step == "plan"
    assert "plan" not in _completed(stack, shim, run)


def test_consulted_agent_completes_nothing_either_way(
    stack: Stack, shim: CountingShim, branchy: str
) -> None:
    run = _to_plan(stack, shim, branchy)
    shim.consult(
        "planner",
        "classifier",
        run=run,
        from_step="plan",
        tool="query_advisories",
        audience=stack.rs_url,
    )
    unchecked = _unchecked(stack, shim)
    # The completion endpoint's refusal of a consulted agent ...
    with pytest.raises(AJWTError) as alone:
        unchecked.complete("classifier", "plan", run=run)
    # ... is the combined request's refusal too.
    with pytest.raises(AJWTError) as combined:
        unchecked.handoff(
            "classifier",
            "patcher",
            "patch",
            run=run,
            audience=stack.rs_url,
            from_step="plan",
            complete=True,
        )
    assert alone.value.reason == combined.value.reason == Reason.CONSULTATION_NOT_ALLOWED
    assert "plan" not in _completed(stack, shim, run)


def test_step_of_another_agent_is_refused(stack: Stack, shim: CountingShim, branchy: str) -> None:
    run = _to_plan(stack, shim, branchy)
    unchecked = _unchecked(stack, shim)
    with pytest.raises(AJWTError) as alone:
        unchecked.complete("patcher", "plan", run=run)
    with pytest.raises(AJWTError) as combined:
        unchecked.handoff(
            "patcher",
            "planner",
            "review",
            run=run,
            audience=stack.rs_url,
            from_step="plan",
            complete=True,
        )
    # The patcher cannot even prove it acts in ``plan`` (no step token for it).
    assert alone.value.reason == combined.value.reason == Reason.WRONG_AGENT_FOR_STEP
    assert "plan" not in _completed(stack, shim, run)


def test_a_new_token_is_one_round_trip_and_a_cached_one_none(
    stack: Stack, shim: CountingShim
) -> None:
    # Issue 17: minting reads the shim's own registration and cache; nothing else is
    # asked of the IdP before the mint itself.
    run = shim.start_run(stack.admin.user_token("user:alice"), "vuln-patch")
    shim.sent.clear()
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        first = shim.token(context, stack.rs_url)
        assert dict(shim.sent) == {"token": 1}
        assert shim.token(context, stack.rs_url) is first
    assert dict(shim.sent) == {"token": 1}


def test_agents_held_by_the_shim_are_not_registered_again(stack: Stack, shim: CountingShim) -> None:
    shim.sent.clear()
    held = shim.ensure_registered(reference_manifests())
    assert dict(shim.sent) == {}
    assert [a.agent_id for a in held] == ["supervisor", "planner", "classifier", "patcher"]
    changed = reference_manifests()[1].model_copy(update={"config": {"temperature": 0.5}})
    again = shim.ensure_registered([*reference_manifests()[:1], changed])
    assert dict(shim.sent) == {"agents": 1}  # the changed one only
    assert again[0] is held[0]
    assert again[1].checksum == changed.checksum() != held[1].checksum


def test_a_registration_about_to_expire_is_renewed(stack: Stack, shim: CountingShim) -> None:
    old = shim.agent("planner")
    old.expires_at = int(time.time()) + 30  # within the 60 s margin
    shim.sent.clear()
    renewed = shim.ensure_registered(reference_manifests())
    assert dict(shim.sent) == {"agents": 1}
    assert renewed[1] is not old and shim.agent("planner") is renewed[1]
    assert renewed[1].expires_at > old.expires_at


def test_an_idp_ignoring_complete_gets_the_completion_on_its_own(
    stack: Stack, shim: CountingShim, branchy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An IdP from before the ``complete`` claim reads the assertion without it: the shim
    # sees the step still open in the IdP's answer and completes it separately.
    from ajwt_core.shim import client as shim_client

    sign = shim_client.encode_delegation_assertion

    def without_complete(claims: DelegationClaims, key: PopKey) -> str:
        return sign(claims.model_copy(update={"complete": False}), key)

    run = _to_plan(stack, shim, branchy)
    monkeypatch.setattr(shim_client, "encode_delegation_assertion", without_complete)
    shim.sent.clear()
    shim.handoff("planner", "patcher", "patch", run=run, audience=stack.rs_url, complete=True)
    assert dict(shim.sent) == {"token": 1, "complete": 1}
    assert "plan" in _completed(stack, shim, run)
