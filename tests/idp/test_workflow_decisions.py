"""Random workflows and random moves against the IdP itself (DESIGN §6.3): every mint,
hand-off and completion the IdP accepts or refuses, it accepts or refuses as the reference
model of ``tests/core/test_workflow_model_check.py`` does, with the same reason.

The moves go through the IdP's service (the grants, the ledger, the run state read back
from the database), with real agent registrations and signed delegation assertions; only
HTTP and proof verification are left out (their own tests cover them).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings

from ajwt_core.checksum import AgentManifest, PromptSpec, ToolSpec
from ajwt_core.dpop import VerifiedProof
from ajwt_core.errors import AJWTError
from ajwt_core.idp.db import ClientRow, Database
from ajwt_core.idp.models import ClientRegistration, RunStart
from ajwt_core.idp.service import ClientCredential, ExchangeParams, IdP, MintParams
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.keys import PopKey, SigningKeySet
from ajwt_core.tokens import DelegationClaims, encode_delegation_assertion, token_hash
from ajwt_core.workflow import Workflow, WorkflowError
from tests.core.test_workflow_model_check import (
    AGENTS,
    TOOLS,
    Model,
    _agent,
    _concrete,
    _document,
    moves,
    workflows,
)

ISSUER = "https://idp.test"
API = "https://api.test"


class Harness:
    """One IdP (SQLite) for the whole test; a fresh client, agents and run per example."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.db = Database(f"sqlite:///{path}")
        self.loop.run_until_complete(self.db.create_schema())
        settings = IdPSettings(issuer=ISSUER, db_url=self.db.url, admin_token="a" * 40)
        self.idp = IdP(settings, self.db, SigningKeySet.generate())
        self.keys = {agent: PopKey.generate() for agent in AGENTS}

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def proof(self, agent: str) -> VerifiedProof:
        key = self.keys[agent]
        return VerifiedProof(
            jkt=key.thumbprint,
            jti=secrets.token_urlsafe(8),
            iat=int(time.time()),
            htm="POST",
            htu=ISSUER + "/token",
            nonce=None,
            jwk=key.public_jwk,
        )

    def start(self, workflow: Workflow) -> tuple[ClientRow, str, dict[str, str]]:
        async def go() -> tuple[ClientRow, str, dict[str, str]]:
            await self.idp.register_workflow(workflow.canonical())
            created = await self.idp.register_client(ClientRegistration(scopes=[]))
            client = await self.idp.authenticate(
                ClientCredential(client_id=created.client_id, secret=created.client_secret)
            )
            checksums = {}
            for agent in AGENTS:
                manifest = AgentManifest(
                    agent_id=agent,
                    prompt=PromptSpec(template=f"You are {agent}."),
                    tools=[ToolSpec(name=t, description=t, parameters={}) for t in TOOLS],
                )
                (registered,) = await self.idp.register_agents(
                    client, [(manifest.model_dump(mode="json"), self.proof(agent), None)]
                )
                checksums[agent] = registered.checksum
            user = self.idp.issue_user_token("user:alice", 600)
            started = await self.idp.start_run(
                client, RunStart(workflow_id=workflow.id, subject_token=user)
            )
            return client, started.run_id, checksums

        result: tuple[ClientRow, str, dict[str, str]] = self.run(go())
        return result


_harness: Harness | None = None


def harness(tmp_path_factory: Any) -> Harness:
    global _harness
    if _harness is None:
        _harness = Harness(Path(tmp_path_factory.mktemp("decisions")) / "idp.db")
    return _harness


def outcome(call: Any, *args: Any) -> tuple[str | None, Any]:
    try:
        result: tuple[str | None, Any] = None, call(*args)
    except AJWTError as exc:
        result = exc.reason.value, None
    event(f"idp: {result[0] or 'allowed'}")
    return result


@given(workflows(), moves)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_idp_decides_as_the_reference_model(
    tmp_path_factory: Any, steps: dict[str, Any], plan: list[Any]
) -> None:
    document = _document(steps)
    document["id"] = "random-" + secrets.token_hex(6)
    try:
        workflow = Workflow.from_mapping(document)
    except WorkflowError:
        assume(False)
        return
    h = harness(tmp_path_factory)
    client, run_id, checksums = h.start(workflow)
    names = workflow.topological_order()
    model = Model(steps, names)
    tokens: dict[tuple[str, str], str] = {}  # (agent, step) -> its latest token

    def mint(agent: str, step: str, tool: str | None) -> str:
        params = MintParams(
            agent_id=agent,
            agent_checksum=checksums[agent],
            run_id=run_id,
            step=step,
            tool=tool,
            resource=API if tool else None,
        )
        token: str = h.run(h.idp.mint(client, h.proof(agent), params)).access_token
        tokens[(agent, step)] = token
        return token

    def model_mint(agent: str, step: str, tool: str | None) -> str | None:
        reason, found = model.mint(agent, step, tool)
        if reason is None:
            model.do_mint(agent, step, found)
        return reason

    def held(agent: str, step: str) -> str | None:
        """The agent's token in the step, minting a step token first if it has none; the
        refusal of that mint is compared too."""
        if (agent, step) in tokens:
            return None
        expected = model_mint(agent, step, None)
        got, _ = outcome(mint, agent, step, None)
        assert got == expected, ("step token", agent, step)
        return got

    for raw in plan:
        move = _concrete(raw, steps, model, names)
        if move is None:
            continue
        if move[0] == "approve":
            step = names[move[1] % len(names)]
            h.run(h.idp.approve(run_id, step, "admin"))
            model.approved.add(step)
        elif move[0] == "mint":
            _, who, index, tool = move
            step = names[index % len(names)]
            agent = _agent(steps, step, who)
            expected = model_mint(agent, step, tool)
            got, _ = outcome(mint, agent, step, tool)
            assert got == expected, (move, model)
        elif move[0] == "delegate":
            _, from_who, fi, to_who, ti = move
            fs, ts = names[fi % len(names)], names[ti % len(names)]
            fa, ta = _agent(steps, fs, from_who), _agent(steps, ts, to_who)
            if held(fa, fs) is not None:
                continue
            # A third of the hand-offs also complete the delegator's step (DESIGN §5.2
            # ``complete``): as the completion endpoint would, after the delegation's
            # checks and before the delegate's token, all or nothing.
            complete = (fi + 2 * ti + len(tokens)) % 3 == 0
            expected = model.delegate(fa, fs, ta, ts)
            if expected is None and complete and (ts == fs or ts not in model.after(fs)):
                expected = "invalid_delegation"  # a consultation or work sent back
            if expected is None:
                twin = Model(
                    model.wf,
                    model.order,
                    dict(model.visits),
                    set(model.entered),
                    set(model.done),
                    set(model.consults),
                    set(model.approved),
                )
                twin.do_delegate(fa, fs, ta, ts)
                if complete:
                    expected = twin.complete(fa, fs)
                    event(f"complete with the hand-off: {expected or 'allowed'}")
                    if expected is None:
                        twin.done.add(fs)
                        twin.entered.add(fs)
                if expected is None:
                    expected, twin_plan = twin.mint(ta, ts, None)
                if expected is None:
                    twin.do_mint(ta, ts, twin_plan)
            parent = tokens[(fa, fs)]
            now = int(time.time())
            assertion = encode_delegation_assertion(
                DelegationClaims(
                    iss=f"agent:{fa}",
                    sub=f"agent:{ta}",
                    aud=ISSUER,
                    intent_id=h.run(h.idp.status(run_id, None)).intent_id,
                    run_id=run_id,
                    from_step=fs,
                    to_step=ts,
                    scope="",
                    parent=token_hash(parent),
                    iat=now,
                    exp=now + 60,
                    jti=secrets.token_urlsafe(8),
                    complete=complete,
                ),
                h.keys[fa],
            )
            params = ExchangeParams(
                mint=MintParams(
                    agent_id=ta,
                    agent_checksum=checksums[ta],
                    run_id=run_id,
                    step=ts,
                    tool=None,
                    resource=None,
                ),
                subject_token=parent,
                actor_token=assertion,
            )
            got, result = outcome(h.run, h.idp.exchange(client, h.proof(ta), params))
            assert got == expected, (move, model)
            if result is not None:
                tokens[(ta, ts)] = result.access_token
                model = twin
        else:
            _, who, index = move
            step = names[index % len(names)]
            agent = _agent(steps, step, who)
            if held(agent, step) is not None:
                continue
            expected = model.complete(agent, step)
            completion = h.idp.complete_step(
                client, tokens[(agent, step)], h.proof(agent), run_id, step
            )
            got, _ = outcome(h.run, completion)
            assert got == expected, (move, model)
            if got is None:
                model.done.add(step)
                model.entered.add(step)
        status = h.run(h.idp.status(run_id, None))
        assert set(status.completed_steps) == model.done
