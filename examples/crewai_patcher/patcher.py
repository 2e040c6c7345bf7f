"""Run the patcher crew against the embedded IdP and resource server, and report."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from crewai import Crew

from ajwt_core.shim import Shim
from ajwt_crewai import Refusal, secure_crew
from ajwt_demo.api import CallRecord
from ajwt_demo.scenarios.crewai import AGENT_IDS, INPUTS, build_crew
from ajwt_demo.stack import Stack, start_stack


def draft_crew() -> Crew:
    """The crew, unsecured and with no API behind it: what ``ajwt workflow export
    examples.crewai_patcher.patcher:draft_crew()`` drafts a workflow from."""
    crew, _ = build_crew(None, "http://127.0.0.1:9", auth=httpx.Auth())
    return crew


def draft_app() -> tuple[Crew, dict[str, str]]:
    """The crew with its CrewAI role → workflow agent id mapping, the pair
    ``secure_crew(crew, shim, AGENT_IDS)`` takes: ``ajwt workflow export`` and ``ajwt
    agents manifest`` on ``examples.crewai_patcher.patcher:draft_app()`` use the app's
    agent ids."""
    return draft_crew(), dict(AGENT_IDS)


@dataclass
class PatcherReport:
    """What one run of the crew did, as the resource server and the IdP saw it."""

    answer: str
    run_id: str
    calls: list[CallRecord]
    pulls: list[dict[str, Any]]
    ledger_ok: bool
    refusals: list[Refusal]


def run_patcher(stack: Stack, *, user: str = "user:alice") -> PatcherReport:
    """Run the crew once for ``user``: a fresh client, the agents registered from their
    CrewAI objects, one run of the ``vuln-patch`` workflow."""
    client = stack.new_client()
    shim = Shim(
        stack.idp_url,
        client["client_id"],
        client_secret=client["client_secret"],
        default_audience=stack.rs_url,
    )
    pulls_before = len(stack.api.state.pulls)
    try:
        crew, _ = build_crew(shim, stack.rs_url)
        binding = secure_crew(crew, shim, AGENT_IDS)
        run = stack.start_run(shim, user)
        with shim.run(run):
            output = crew.kickoff(inputs=INPUTS)
    finally:
        shim.close()
    calls = [c for c in stack.api.state.calls if c.run_id == run.run_id]
    return PatcherReport(
        answer=str(getattr(output, "raw", output)),
        run_id=run.run_id,
        calls=calls,
        pulls=stack.api.state.pulls[pulls_before:],
        ledger_ok=bool(stack.admin.verify_ledger(run.run_id)["ok"]),
        refusals=list(binding.refusals),
    )


def format_report(report: PatcherReport) -> str:
    """One line per API call: agent, step, tool, delegation chain."""
    lines = [f"run {report.run_id}", ""]
    header = f"{'agent':<11} {'step':<9} {'tool':<20} {'chain':<40} request"
    lines += [header, "-" * len(header)]
    for call in report.calls:
        chain = " -> ".join(call.chain)
        lines.append(
            f"{call.agent or '-':<11} {call.step or '-':<9} {call.tool or '-':<20} "
            f"{chain:<40} {call.method} {call.path}"
        )
    lines.append("")
    for pull in report.pulls:
        lines.append(f"pull request #{pull['number']} on {pull['repo']}: {pull['title']}")
    for refusal in report.refusals:
        lines.append(f"refused: {refusal.agent} {refusal.tool}: {refusal.reason.value}")
    lines.append(f"ledger verified: {report.ledger_ok}")
    lines.append(f"crew answer: {report.answer}")
    return "\n".join(lines)


def main() -> int:
    """Start the embedded IdP and API on 127.0.0.1, run the crew, print the report."""
    with tempfile.TemporaryDirectory(prefix="ajwt-crewai-example-") as folder:
        stack = start_stack(Path(folder) / "idp.db")
        try:
            report = run_patcher(stack)
        finally:
            stack.close()
    print(format_report(report))
    return 0 if report.ledger_ok and len(report.pulls) == 3 and not report.refusals else 1
