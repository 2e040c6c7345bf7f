"""A workflow drawn for people: plain text for a terminal, Mermaid for documents.

>>> from ajwt_core.workflow import reference_workflow
>>> print(text(reference_workflow(), width=80))  # doctest: +NORMALIZE_WHITESPACE
workflow vuln-patch v1
  triage    supervisor   tools list_repos; scopes repo:read
  plan      planner      tools read_file; scopes repo:read; after triage
  classify  classifier   tools query_advisories; scopes advisories:read; after plan
  patch     patcher      tools create_pull_request; scopes repo:write; after classify
>>> print(mermaid(reference_workflow()).splitlines()[1])
    s0["triage<br/>supervisor<br/>list_repos"]
"""

from __future__ import annotations

import textwrap

from ajwt_core.workflow.model import Step, Workflow


def _facts(step: Step) -> list[str]:
    facts = [f"tools {', '.join(sorted(step.tools))}" if step.tools else "routing (no tools)"]
    if step.scopes:
        facts.append(f"scopes {', '.join(sorted(step.scopes))}")
    if step.after:
        facts.append(f"after {', '.join(sorted(step.after))}")
    if step.after_any:
        facts.append(f"after any of {', '.join(sorted(step.after_any))}")
    if step.one_of:
        facts.append(f"then one of {', '.join(sorted(step.one_of))}")
    if step.loop_to:
        facts.append(f"may send back to {', '.join(sorted(step.loop_to))}")
    if step.max_visits != 1:
        facts.append(f"at most {step.max_visits} visits")
    for agent in sorted(step.consult):
        tools = step.consult[agent].tools
        facts.append(
            f"consults {agent}" + (f" (tools {', '.join(sorted(tools))})" if tools else "")
        )
    if not step.required:
        facts.append("optional")
    if step.approval:
        facts.append("needs approval")
    return facts


def text(workflow: Workflow, *, width: int = 80) -> str:
    """The steps in run order, one block each, folded to ``width`` columns."""
    order = workflow.topological_order()
    id_width = min(max(len(s) for s in order), 24)
    agent_width = min(max(len(workflow.steps[s].agent) for s in order), 20)
    lines = [f"workflow {workflow.id} v{workflow.version}"]
    indent = " " * (2 + id_width + 2 + agent_width + 3)
    for step_id in order:
        step = workflow.steps[step_id]
        head = f"  {step_id:<{id_width}}  {step.agent:<{agent_width}}   "
        body = "; ".join(_facts(step))
        wrapped = textwrap.wrap(
            body,
            width=max(width, len(head) + 20),
            initial_indent=head,
            subsequent_indent=indent,
            break_on_hyphens=False,
        )
        lines.extend(wrapped)
    return "\n".join(lines)


def _label(*parts: str) -> str:
    return "<br/>".join(p.replace('"', "#quot;") for p in parts if p)


def mermaid(workflow: Workflow) -> str:
    """A Mermaid ``flowchart``: steps as boxes (routing steps as hexagons), ``after`` as
    solid arrows, ``after_any`` dashed, ``one_of`` labelled, loops and consultations dotted.
    """
    order = workflow.topological_order()
    ids = {step_id: f"s{i}" for i, step_id in enumerate(order)}
    lines = ["flowchart TD"]
    consulted: dict[str, str] = {}
    for step_id in order:
        step = workflow.steps[step_id]
        label = _label(step_id, step.agent, ", ".join(sorted(step.tools)))
        if step.is_routing:
            lines.append(f'    {ids[step_id]}{{{{"{label}"}}}}')
        else:
            lines.append(f'    {ids[step_id]}["{label}"]')
        for agent in sorted(step.consult):
            if agent not in consulted:
                consulted[agent] = f"a{len(consulted)}"
                lines.append(f'    {consulted[agent]}(("{_label(agent)}"))')
    for step_id in order:
        step = workflow.steps[step_id]
        chooser = workflow.chooser_of(step_id)
        for dep in sorted(step.after):
            edge = "-- one of -->" if chooser == dep else "-->"
            lines.append(f"    {ids[dep]} {edge} {ids[step_id]}")
        for dep in sorted(step.after_any):
            edge = "-. one of .->" if chooser == dep else "-. any .->"
            lines.append(f"    {ids[dep]} {edge} {ids[step_id]}")
        for target in sorted(step.loop_to):
            visits = workflow.steps[target].max_visits
            lines.append(f"    {ids[step_id]} -. back, max {visits} .-> {ids[target]}")
        for agent in sorted(step.consult):
            lines.append(f"    {ids[step_id]} -. consults .- {consulted[agent]}")
    return "\n".join(lines)
