"""``ajwt demo``: the paper's experiment, end to end, in one process and offline.

1. Start an embedded IdP (SQLite in a temporary folder unless ``db_url`` is given), the
   reference API (code host + advisory database) behind A-JWT, and the same API behind
   plain OAuth with its client-credentials token server (the baseline).
2. Run the multi-agent vulnerability-patcher workflow (supervisor, planner, classifier,
   patcher; a scripted model, no API key) through a framework adapter twice: with the
   baseline's bearer token, and with A-JWT.
3. Send every attack of DESIGN §9 to both (``ajwt_demo.attacks``) and record what each
   server answered.
4. Measure the per-call overhead of this run, and write ``report.json``, ``report.md``
   and ``report.html`` (``ajwt_demo.report``).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ajwt_core.dpop import create_proof
from ajwt_core.rs import RoutePolicy, Verifier
from ajwt_core.server import BackgroundServer
from ajwt_core.shim import Run, Shim
from ajwt_core.workflow import reference_workflow
from ajwt_demo.api import BaselineApi, CallRecord, create_bearer_api
from ajwt_demo.attacks import ATTACKS, Arena, Outcome
from ajwt_demo.baseline import BaselineAuthServer, ClientCredentialsAuth
from ajwt_demo.scenario import load_scenario
from ajwt_demo.stack import Stack, start_stack

USER = "user:alice"
SCOPES = ["repo:read", "repo:write", "advisories:read"]

Progress = Callable[[str, int, int], None]


@dataclass
class DemoConfig:
    framework: str = "langgraph"
    out: Path = Path("ajwt-demo-report")
    db_url: str | None = None
    fast: bool = False
    user: str = USER


@dataclass
class Baseline:
    auth_server: BaselineAuthServer
    api: BaselineApi
    token_url: str
    api_url: str
    auth: ClientCredentialsAuth
    servers: list[BackgroundServer] = field(default_factory=list)

    def close(self) -> None:
        for server in reversed(self.servers):
            server.close()


def start_baseline() -> Baseline:
    token_server, api_server = BackgroundServer(), BackgroundServer()
    auth_server = BaselineAuthServer(issuer=token_server.url)
    secret = auth_server.register("patcher-app", SCOPES)
    token_server.start(auth_server.app())
    api = create_bearer_api(
        issuer=token_server.url, audience=api_server.url, key=auth_server.key.public_key
    )
    api_server.start(api.asgi)
    token_url = token_server.url + "/token"
    auth = ClientCredentialsAuth(token_url, "patcher-app", secret, resource=api_server.url)
    return Baseline(auth_server, api, token_url, api_server.url, auth, [token_server, api_server])


def _call(record: CallRecord, status: int = 200) -> dict[str, Any]:
    return {
        "method": record.method,
        "path": record.path,
        "status": status,
        "agent": record.agent,
        "step": record.step,
        "tool": record.tool,
        "chain": record.chain,
        "user": record.subject,
    }


def delegation_tree(shim: Shim, run: Run, calls: list[dict[str, Any]], ledger: Any) -> Any:
    agents: dict[str, dict[str, Any]] = {}
    delegations = []
    for entry in ledger["entries"]:
        data = entry["data"]
        if entry["kind"] == "token_minted":
            agent = data["agent"]
            agents.setdefault(
                agent,
                {
                    "id": agent,
                    "checksum": shim.agent(agent).checksum,
                    "registration_id": data["registration_id"],
                },
            )
        elif entry["kind"] == "delegation":
            delegations.append(
                {
                    "from": data["from"],
                    "to": data["to"],
                    "from_step": data["from_step"],
                    "to_step": data["to_step"],
                    "assertion": data["assertion"],
                    "scope": data["scope"],
                }
            )
    return {
        "user": run.initiated_by,
        "run_id": run.run_id,
        "agents": list(agents.values()),
        "delegations": delegations,
        "calls": calls,
    }


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure_overhead(stack: Stack, baseline: Baseline, count: int) -> dict[str, Any]:
    """Per-call costs in this run: a cold mint over loopback, signing a proof, and the
    resource server's verification (A-JWT cold and warm, and the baseline's bearer)."""
    import asyncio

    shim = stack.shim()
    run = stack.start_run(shim)
    mints: list[float] = []
    with shim.acting("supervisor", tool="list_repos", run=run) as context:
        for _ in range(count):
            shim._tokens.clear()
            start = time.perf_counter()
            issued = shim.token(context, stack.rs_url)
            mints.append(time.perf_counter() - start)
    key = shim.agent("supervisor").key
    url = stack.rs_url + "/repos"
    proofs: list[str] = []
    signing: list[float] = []
    for _ in range(count * 2):
        start = time.perf_counter()
        proofs.append(create_proof(key, "GET", url, token=issued.token, body=b""))
        signing.append(time.perf_counter() - start)
    policy = RoutePolicy.of(scopes=["repo:read"], tools=["list_repos"])

    def verifier(cache: int) -> Verifier:
        return Verifier(
            issuer=stack.idp_url,
            audience=stack.rs_url,
            keys=stack.idp_app.state.idp.keys.verification_keys(),
            token_cache_size=cache,
        )

    async def verify_all(v: Verifier, batch: list[str]) -> list[float]:
        out = []
        for proof in batch:
            headers = [("authorization", f"DPoP {issued.token}"), ("dpop", proof)]
            start = time.perf_counter()
            await v.verify(method="GET", url=url, headers=headers, body=b"", policy=policy)
            out.append(time.perf_counter() - start)
        return out

    cold = asyncio.run(verify_all(verifier(0), proofs[:count]))
    warm = asyncio.run(verify_all(verifier(100), proofs[count:]))
    bearer: list[float] = []
    import jwt as pyjwt

    token = baseline.auth.token
    public = baseline.auth_server.key.public_key
    for _ in range(count):
        start = time.perf_counter()
        pyjwt.decode(
            token,
            public,
            algorithms=["ES256"],
            audience=baseline.api_url,
            issuer=baseline.auth_server.issuer,
        )
        bearer.append(time.perf_counter() - start)
    shim.close()
    return {
        "calls": count,
        "mint_ms_p50": round(statistics.median(mints) * 1e3, 2),
        "mint_ms_p99": round(_p(mints, 0.99) * 1e3, 2),
        "proof_us_p50": round(statistics.median(signing) * 1e6, 1),
        "verify_us_p50": round(statistics.median(cold) * 1e6, 1),
        "verify_cached_us_p50": round(statistics.median(warm) * 1e6, 1),
        "bearer_verify_us_p50": round(statistics.median(bearer) * 1e6, 1),
    }


@contextlib.contextmanager
def _database(config: DemoConfig) -> Iterator[tuple[Path, str | None]]:
    with tempfile.TemporaryDirectory(prefix="ajwt-demo-") as tmp:
        yield Path(tmp) / "idp.db", config.db_url


def run_demo(config: DemoConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run the whole demo; returns the report (also written to ``config.out``)."""
    from ajwt_demo.report import write_reports

    def step(label: str, done: int, total: int) -> None:
        if progress is not None:
            progress(label, done, total)

    scenario = load_scenario(config.framework)
    total = 4 + len(ATTACKS)
    with _database(config) as (db_path, db_url):
        step("starting the IdP, the A-JWT API and the plain-OAuth baseline", 0, total)
        stack = start_stack(db_path, db_url=db_url, strict=True)
        baseline = start_baseline()
        try:
            step(f"baseline: the {scenario.name} workflow with one bearer token", 1, total)
            scenario.run_baseline(baseline.api_url, baseline.auth)
            baseline_calls = [_call(c) for c in baseline.api.state.calls]
            baseline_attempts = baseline.auth.sent

            step(f"A-JWT: the {scenario.name} workflow, each agent with its own token", 2, total)
            client = stack.new_client(SCOPES)
            shim = Shim(
                stack.idp_url,
                client["client_id"],
                client_secret=client["client_secret"],
                default_audience=stack.rs_url,
            )
            run = shim.start_run(
                stack.admin.user_token(config.user), "vuln-patch", intent="patch the CVEs"
            )
            attempted: list[str] = []  # every tool call the agents tried, refused or not
            shim.subscribe(
                lambda e: (
                    attempted.append(e.kind) if e.kind in ("tool_started", "tool_refused") else None
                )
            )
            answer = scenario.run_secured(shim, run, stack.rs_url)
            ajwt_calls = [_call(c) for c in stack.api.state.calls if c.run_id == run.run_id]
            ledger = stack.admin.ledger(run.run_id)
            verified = stack.admin.verify_ledger(run.run_id)
            tree = delegation_tree(shim, run, ajwt_calls, ledger)

            arena = Arena(
                stack=stack,
                baseline_url=baseline.api_url,
                baseline_token=baseline.auth.token,
                baseline_token_url=baseline.token_url,
                baseline_key=baseline.auth_server.key,
            )
            attacks = []
            for index, attack in enumerate(ATTACKS):
                step(f"attack {attack.id}: {attack.name}", 3 + index, total)
                base_outcome, ajwt_outcome = _safely(attack.run, arena)
                attacks.append(
                    {
                        "id": attack.id,
                        "name": attack.name,
                        "stride": attack.stride,
                        "description": attack.description,
                        "check": attack.check,
                        "baseline": base_outcome.as_dict(),
                        "ajwt": ajwt_outcome.as_dict(),
                    }
                )
            step("measuring the per-call overhead", 3 + len(ATTACKS), total)
            overhead = measure_overhead(stack, baseline, 20 if config.fast else 200)
            shim.close()
        finally:
            baseline.close()
            stack.close()
    report = build_report(
        config,
        attacks,
        (baseline_calls, baseline_attempts),
        (ajwt_calls, len(attempted)),
        tree,
        ledger,
        verified,
        overhead,
        answer,
    )
    step("writing the report", total, total)
    write_reports(report, config.out)
    return report


def _safely(
    attack: Callable[[Arena], tuple[Outcome, Outcome]], arena: Arena
) -> tuple[Outcome, Outcome]:
    """An attack that breaks counts as not blocked on both sides (never hidden)."""
    try:
        return attack(arena)
    except Exception as exc:  # noqa: BLE001 - reported in the table, not swallowed
        failed = Outcome(False, 0, "demo_error", None, f"the attack could not run: {exc!r}")
        return failed, failed


def build_report(
    config: DemoConfig,
    attacks: list[dict[str, Any]],
    baseline: tuple[list[dict[str, Any]], int],
    secured: tuple[list[dict[str, Any]], int],
    tree: dict[str, Any],
    ledger: dict[str, Any],
    verified: dict[str, Any],
    overhead: dict[str, Any],
    answer: str,
) -> dict[str, Any]:
    # The APIs record only the calls they accepted; the attempts were counted client-side.
    (baseline_calls, baseline_attempts), (ajwt_calls, attempts) = baseline, secured
    blocked = sum(1 for a in attacks if a["ajwt"]["blocked"])
    baseline_blocked = sum(1 for a in attacks if a["baseline"]["blocked"])
    accepted = len(ajwt_calls)
    ok = blocked == len(attacks) and accepted == attempts > 0 and bool(verified.get("ok"))
    line = (
        f"A-JWT blocked {blocked}/{len(attacks)} attacks; "
        f"baseline blocked {baseline_blocked}/{len(attacks)}; "
        f"legitimate calls accepted {accepted}/{attempts}"
    )
    return {
        "version": 1,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "framework": config.framework,
        "answer": answer,
        "summary": {
            "attacks": len(attacks),
            "ajwt_blocked": blocked,
            "baseline_blocked": baseline_blocked,
            "legit_calls": attempts,
            "legit_accepted": accepted,
            "baseline_legit_calls": baseline_attempts,
            "baseline_legit_accepted": len(baseline_calls),
            "ok": ok,
            "line": line,
        },
        "overhead": overhead,
        "legitimate": {"baseline": baseline_calls, "ajwt": ajwt_calls},
        "attacks": attacks,
        "workflow": reference_workflow().canonical(),
        "delegation_tree": tree,
        "ledger": {
            "run_id": ledger["run_id"],
            "ok": bool(verified.get("ok")),
            "head": verified.get("head"),
            "entries": ledger["entries"],
        },
        "config": {k: str(v) for k, v in asdict(config).items()},
    }
