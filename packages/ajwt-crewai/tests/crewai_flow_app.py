"""A CrewAI Flow whose A-JWT run travels in its persisted state (run by test_flows.py).

``python crewai_flow_app.py PHASE SETTINGS.json`` runs one phase in this process and
prints one JSON line (the test runs phase 1 in its own process, phase 2 in another):

- phase ``1``: the flow starts the run (``flow_run``) and its crew works until a person
  must approve: the supervisor lists the repositories and hands planning to the planner;
- phase ``2`` (another process, after a pause longer than the tokens' lifetime): the
  flow is restored from its persisted state (``kickoff(inputs={"id": ...})``), the run
  resumed from the IdP's ledger, and the planner hands classification on with no tool
  call first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ajwt_demo.scenarios.crewai.offline import keep_crewai_offline

keep_crewai_offline()

from crewai import Crew, Task  # noqa: E402 - crewai loads after the offline flags
from crewai.flow.flow import Flow, start  # noqa: E402
from crewai.flow.persistence import SQLiteFlowPersistence, persist  # noqa: E402

from ajwt_core.shim import Shim  # noqa: E402
from ajwt_crewai import secure_crew  # noqa: E402
from ajwt_crewai.flows import flow_run, save_run  # noqa: E402
from ajwt_crewai.testing import Turn  # noqa: E402
from ajwt_demo.scenarios.crewai import (  # noqa: E402
    AGENT_IDS,
    INPUTS,
    TURNS,
    reference_agents,
    reference_tools,
    scripted_llm,
)


def delegate(coworker: str) -> list[tuple[str, dict[str, Any]]]:
    return [("delegate_work_to_coworker", {"task": "Go on.", "context": "-", "coworker": coworker})]


def crew_for(phase: str, shim: Shim, api_url: str) -> Crew:
    turns: dict[str, list[Turn]] = dict(TURNS)
    turns["Security supervisor"] = [[("list_repos", {})], delegate("Dependency planner"), "Ask."]
    turns["Dependency planner: Classify the dependencies."] = [
        delegate("Advisory classifier"),
        "Classified.",
    ]
    agents = reference_agents(reference_tools(shim, api_url), scripted_llm(turns))
    if phase == "1":
        lead = agents["supervisor"]
        task = Task(description="Plan the fix for {org}.", expected_output="-", agent=lead)
    else:
        lead = agents["planner"]
        lead.allow_delegation = True
        task = Task(description="Classify the dependencies.", expected_output="-", agent=lead)
    return Crew(agents=list(agents.values()), tasks=[task])


def run_flow(phase: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Run one phase of the flow; what it did, as JSON data."""
    shim = Shim(
        settings["idp_url"],
        settings["client_id"],
        client_secret=settings["client_secret"],
        default_audience=settings["api_url"],
    )
    refusals: list[str] = []

    @persist(SQLiteFlowPersistence(settings["flow_db"]))
    class PatchFlow(Flow[dict[str, Any]]):
        @start()
        def work(self) -> str:
            run = flow_run(
                shim,
                self.state,
                user_token=settings["user_token"],
                workflow="vuln-patch",
                intent="patch CVEs",
            )
            crew = crew_for(phase, shim, settings["api_url"])
            binding = secure_crew(crew, shim, AGENT_IDS)
            with shim.run(run):
                crew.kickoff(inputs=INPUTS)
            save_run(shim, self.state, run)
            refusals.extend(f"{r.agent}:{r.tool}:{r.reason.value}" for r in binding.refusals)
            return run.run_id

    flow = PatchFlow()
    inputs = {"id": settings["flow_id"]} if phase == "2" else None
    run_id = flow.kickoff(inputs=inputs)
    shim.close()
    return {"flow_id": flow.state["id"], "run_id": run_id, "refusals": refusals}


def main(phase: str, settings_path: str) -> None:
    print(json.dumps(run_flow(phase, json.loads(Path(settings_path).read_text()))))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
