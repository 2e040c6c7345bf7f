"""Random workflows and random moves: every decision of :class:`RunState` (the IdP's) equals
that of a small reference model written here from DESIGN §6.3, independently of it.

The reference keeps its own state and applies its own effects, so a difference in a
decision, or in where a run stands after a sequence of moves, fails the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from ajwt_core.errors import AJWTError
from ajwt_core.workflow import RunState, Workflow, WorkflowError

AGENTS = ["a1", "a2", "a3"]
TOOLS = ["t1", "t2"]


# ------------------------------------------------------------------ the reference


@dataclass
class Model:
    """DESIGN §6.3 restated: sets and recursion, no shared code with RunState."""

    wf: dict[str, dict[str, Any]]
    order: list[str]
    visits: dict[str, int] = field(default_factory=dict)
    entered: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    consults: set[tuple[str, str]] = field(default_factory=set)
    approved: set[str] = field(default_factory=set)

    def needs_approval(self, s: str) -> bool:
        return bool(self.wf[s]["approval"]) and s not in self.approved

    def preds(self, s: str) -> list[str]:
        return self.wf[s]["after"] + self.wf[s]["after_any"]

    def before(self, s: str) -> set[str]:
        out: set[str] = set()
        for p in self.preds(s):
            out |= {p} | self.before(p)
        return out

    def after(self, s: str) -> set[str]:
        return {t for t in self.wf if s in self.before(t)}

    def chooser(self, s: str) -> str | None:
        return next((r for r in self.wf if s in self.wf[r]["one_of"]), None)

    def skipped(self, s: str) -> bool:
        r = self.chooser(s)
        if r is not None:
            taken = [m for m in self.wf[r]["one_of"] if m in self.entered | self.done]
            if taken and taken[0] != s:
                return True
        step = self.wf[s]
        if any(self.skipped(p) for p in step["after"]):
            return True
        return bool(step["after_any"]) and all(self.skipped(p) for p in step["after_any"])

    def finished(self) -> bool:
        """Every step on the run's path is done (all steps are required here)."""
        return all(s in self.done for s in self.order if not self.skipped(s))

    def sound(self, done: set[str]) -> set[str]:
        ok: set[str] = set()
        for s in self.order:
            step = self.wf[s]
            if (
                s in done
                and set(step["after"]) <= ok
                and (not step["after_any"] or ok & set(step["after_any"]))
            ):
                ok.add(s)
        return ok

    def ready(self, s: str, done: set[str]) -> bool:
        ok = self.sound(done)
        step = self.wf[s]
        return set(step["after"]) <= ok and (
            not step["after_any"] or bool(ok & set(step["after_any"]))
        )

    def plan(self, agent: str, target: str, done: set[str], depth: int = 0) -> list[str] | None:
        """Own steps to finish so that ``target`` is ready (None: impossible)."""
        plan: list[str] = []
        step = self.wf[target]
        for p in step["after"]:
            if p in done:
                continue
            sub = self.finish(agent, p, done | set(plan), depth)
            if sub is None:
                return None
            plan += [x for x in sub if x not in plan]
        if step["after_any"] and not (done | set(plan)) & set(step["after_any"]):
            options = sorted(
                step["after_any"], key=lambda p: (p not in self.entered, self.order.index(p))
            )
            for p in options:
                sub = self.finish(agent, p, done | set(plan), depth)
                if sub is not None:
                    plan += [x for x in sub if x not in plan]
                    break
            else:
                return None
        return plan

    def finish(self, agent: str, s: str, done: set[str], depth: int) -> list[str] | None:
        if self.wf[s]["agent"] != agent or self.skipped(s) or self.needs_approval(s):
            return None
        sub = self.plan(agent, s, done, depth + 1)
        return None if sub is None else [*sub, s]

    # -- decisions: None (allowed) or the reason refused

    def mint(self, agent: str, s: str, tool: str | None) -> tuple[str | None, list[str]]:
        step = self.wf[s]
        if step["agent"] == agent:
            if tool is not None and tool not in step["tools"]:
                return "tool_not_allowed", []
        elif (agent, s) in self.consults:
            if tool is not None and tool not in step["consult"][agent]:
                return "tool_not_allowed", []
        else:
            return "wrong_agent_for_step", []
        if self.skipped(s):
            return "branch_not_taken", []
        plan: list[str] = []
        if not self.ready(s, self.done):
            found = self.plan(agent, s, self.done) if (agent, s) not in self.consults else None
            if found is None or step["agent"] != agent:
                return "dependencies_incomplete", []
            plan = found
        if self.needs_approval(s):
            return "approval_required", []
        return None, plan

    def do_mint(self, agent: str, s: str, plan: list[str]) -> None:
        self.done |= set(plan)
        self.entered |= set(plan)
        if self.wf[s]["agent"] == agent:
            self.entered.add(s)

    def delegate(self, fa: str, fs: str, ta: str, ts: str) -> str | None:
        src, dst = self.wf[fs], self.wf[ts]
        if fs not in self.entered and src["agent"] == fa:
            return "step_not_entered"
        if src["agent"] != fa:
            return "consultation_not_allowed" if (fa, fs) in self.consults else "invalid_delegation"
        if self.skipped(fs):
            return "branch_not_taken"
        if ts == fs:
            return None if ta in src["consult"] else "consultation_not_allowed"
        if ts not in self.after(fs) and ts not in src["loop_to"]:
            return "delegation_not_along_workflow"
        if dst["agent"] != ta:
            return "delegate_mismatch"
        if self.skipped(ts):
            return "branch_not_taken"
        r = self.chooser(ts)
        if r is not None:
            taken = [m for m in self.wf[r]["one_of"] if m in self.entered | self.done]
            if taken and taken[0] != ts:
                return "branch_not_taken"
        if ts in self.done and self.visits.get(ts, 1) >= dst["max_visits"]:
            return (
                "run_finished"
                if ts in self.after(fs) and self.finished()
                else "visit_limit_reached"
            )
        return None

    def do_delegate(self, fa: str, fs: str, ta: str, ts: str) -> None:
        if ts == fs:
            self.consults.add((ta, ts))
            return
        if ts in self.after(fs) and fs not in self.done and fs in self.preds(ts):
            self.done.add(fs)
            self.entered.add(fs)
        if ts in self.done:
            self.visits[ts] = self.visits.get(ts, 1) + 1
            reset = {ts} | self.after(ts)
            self.entered -= reset
            self.done -= reset
            self.approved -= reset
            self.consults = {(a, s) for a, s in self.consults if s not in reset}

    def complete(self, agent: str, s: str) -> str | None:
        if self.wf[s]["agent"] != agent:
            return (
                "consultation_not_allowed"
                if (agent, s) in self.consults
                else "wrong_agent_for_step"
            )
        if self.skipped(s):
            return "branch_not_taken"
        if s in self.done:
            return None
        if s not in self.entered:
            return "step_not_entered"
        if not self.ready(s, self.done):
            return "dependencies_incomplete"
        return None


# ---------------------------------------------------------------- the random input


@st.composite
def workflows(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(2, 7))
    names = [f"s{i}" for i in range(count)]
    steps: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        earlier = names[:i]
        preds = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        split = draw(st.integers(0, len(preds)))
        after_any = preds[split:] if len(preds[split:]) >= 2 else []
        after = preds[:split] + (preds[split:] if not after_any else [])
        agent = draw(st.sampled_from(AGENTS))
        others = [a for a in AGENTS if a != agent]
        step: dict[str, Any] = {
            "agent": agent,
            "tools": draw(st.lists(st.sampled_from(TOOLS), unique=True, max_size=2)),
            "after": after,
            "after_any": after_any,
            "approval": draw(st.booleans()) and draw(st.booleans()),
            "max_visits": draw(st.integers(1, 3)),
            "one_of": [],
            "loop_to": [],
            "consult": {
                a: draw(st.lists(st.sampled_from(TOOLS), unique=True, max_size=1))
                for a in draw(st.lists(st.sampled_from(others), unique=True, max_size=1))
            },
        }
        steps[name] = step
    for name in names:
        successors = [n for n in names if name in steps[n]["after"] + steps[n]["after_any"]]
        if len(successors) >= 2 and draw(st.booleans()):
            free = [n for n in successors if not any(n in s["one_of"] for s in steps.values())]
            if len(free) >= 2:
                steps[name]["one_of"] = free[:2]
        ancestors = _ancestors(steps, name)
        targets = [t for t in ancestors if steps[t]["max_visits"] >= 2]
        steps[name]["loop_to"] = (
            draw(st.lists(st.sampled_from(targets), unique=True, max_size=1)) if targets else []
        )
    return steps


def _ancestors(steps: dict[str, dict[str, Any]], name: str) -> list[str]:
    out: set[str] = set()
    todo = list(steps[name]["after"] + steps[name]["after_any"])
    while todo:
        node = todo.pop()
        if node not in out:
            out.add(node)
            todo += steps[node]["after"] + steps[node]["after_any"]
    return sorted(out)


def _document(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    body = {}
    for name, step in steps.items():
        body[name] = {
            **{k: v for k, v in step.items() if k != "consult"},
            "consult": {a: {"tools": tools} for a, tools in step["consult"].items()},
        }
    return {"id": "random", "version": 1, "steps": body}


# An agent is named by a selector: mostly the step's own agent or one it may consult, so
# that runs get somewhere; sometimes any agent, so that refusals are exercised too.
agents = st.sampled_from(["owner", "owner", "owner", "consultant", *AGENTS])
moves = st.lists(
    st.one_of(
        st.tuples(st.just("mint"), agents, st.integers(0, 6), st.sampled_from([None, *TOOLS])),
        st.tuples(st.just("delegate"), agents, st.integers(0, 6), agents, st.integers(0, 6)),
        st.tuples(st.just("complete"), agents, st.integers(0, 6)),
        st.tuples(st.just("approve"), st.integers(0, 6)),
        # progress: finish the k-th due step; hand on along an edge or a loop
        st.tuples(st.just("finish"), st.integers(0, 6)),
        st.tuples(st.just("hand_on"), st.integers(0, 6), st.integers(0, 6)),
    ),
    max_size=30,
)


def _agent(steps: dict[str, Any], step: str, selector: str) -> str:
    if selector == "owner":
        return str(steps[step]["agent"])
    if selector == "consultant":
        return next(iter(sorted(steps[step]["consult"])), str(steps[step]["agent"]))
    return selector


def _concrete(raw: Any, steps: dict[str, Any], model: Model, names: list[str]) -> Any:
    """Turn a progress move into plain moves the model considers likely to succeed."""
    if raw[0] == "finish":
        due = [
            n
            for n in names
            if not model.skipped(n) and n not in model.done and model.ready(n, model.done)
        ]
        return ("complete", "owner", names.index(due[raw[1] % len(due)])) if due else None
    if raw[0] == "hand_on":
        sources = [n for n in names if n in model.entered and not model.skipped(n)]
        if not sources:
            return None
        source = sources[raw[1] % len(sources)]
        targets = sorted(model.after(source)) + list(steps[source]["loop_to"])
        if not targets:
            return None
        target = targets[raw[2] % len(targets)]
        return ("delegate", "owner", names.index(source), "owner", names.index(target))
    return raw


def _reason(call: Any, *args: Any) -> tuple[str | None, Any]:
    try:
        result = None, call(*args)
    except AJWTError as exc:
        result = exc.reason.value, None
    event(f"outcome: {result[0] or 'allowed'}")
    return result


@given(workflows(), moves)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_run_state_decides_as_the_reference_model(steps: dict[str, Any], plan: list[Any]) -> None:
    try:
        wf = Workflow.from_mapping(_document(steps))
    except WorkflowError:
        assume(False)
        return
    model = Model(steps, wf.topological_order())
    state = RunState(wf)
    names = wf.topological_order()
    for raw in plan:
        move = _concrete(raw, steps, model, names)
        if move is None:
            continue
        if move[0] == "approve":
            step = names[move[1] % len(names)]
            state.apply("step_approved", {"step": step})
            model.approved.add(step)
            continue
        if move[0] == "mint":
            _, who, index, tool = move
            step = names[index % len(names)]
            agent = _agent(steps, step, who)
            expected, plan_ = model.mint(agent, step, tool)
            got, decision = _reason(state.check_mint, agent, step, tool)
            assert got == expected, (move, state, model)
            if decision is not None:
                assert list(decision.complete_first) == plan_
                for done in decision.complete_first:
                    state.apply("step_completed", {"step": done, "agent": agent})
                if decision.enters:
                    state.apply("step_entered", {"step": step, "agent": agent})
                model.do_mint(agent, step, plan_)
        elif move[0] == "delegate":
            _, from_who, fi, to_who, ti = move
            fs, ts = names[fi % len(names)], names[ti % len(names)]
            fa, ta = _agent(steps, fs, from_who), _agent(steps, ts, to_who)
            expected = model.delegate(fa, fs, ta, ts)
            got, decision = _reason(state.check_delegation, fa, fs, ta, ts)
            assert got == expected, (move, state, model)
            if decision is None:
                continue
            # The delegate's token is checked on the state after the hand-off.
            trial, twin = (
                state.copy(),
                Model(
                    model.wf,
                    model.order,
                    dict(model.visits),
                    set(model.entered),
                    set(model.done),
                    set(model.consults),
                    set(model.approved),
                ),
            )
            for done in decision.complete_first:
                trial.apply("step_completed", {"step": done, "agent": fa})
            if decision.reopen:
                trial.apply(
                    "step_reopened", {"step": ts, "visit": decision.visit, "reset": decision.reopen}
                )
            trial.apply(
                "delegation",
                {
                    "from": fa,
                    "to": ta,
                    "from_step": fs,
                    "to_step": ts,
                    "scope": "",
                    "chain": [fa, ta],
                    "assertion": "x",
                    "kind": decision.kind,
                },
            )
            twin.do_delegate(fa, fs, ta, ts)
            expected_mint, twin_plan = twin.mint(ta, ts, None)
            got_mint, mint = _reason(trial.check_mint, ta, ts, None)
            assert got_mint == expected_mint, (move, trial, twin)
            if mint is not None:
                for done in mint.complete_first:
                    trial.apply("step_completed", {"step": done, "agent": ta})
                if mint.enters:
                    trial.apply("step_entered", {"step": ts, "agent": ta})
                twin.do_mint(ta, ts, twin_plan)
                state, model = trial, twin
        else:
            _, who, index = move
            step = names[index % len(names)]
            agent = _agent(steps, step, who)
            expected = model.complete(agent, step)
            got, changed = _reason(state.check_completion, agent, step)
            assert got == expected, (move, state, model)
            if changed:
                state.apply("step_completed", {"step": step, "agent": agent})
                model.done.add(step)
                model.entered.add(step)
        assert state.completed == model.done
        assert state.entered == model.entered
        assert {s for s in names if model.skipped(s)} == set(state.skipped())
