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
from typing import Any

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


_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _PAD = 190, 64, 70, 26, 16


def _xml(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _clip(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def svg(workflow: Workflow) -> str:
    """The workflow as a self-contained SVG (no scripts, no fonts to fetch): steps as
    boxes in columns by depth, ``after`` edges solid, ``after_any`` dashed, ``one_of``
    edges labelled, loops drawn back above, consulted agents as ellipses below their step.

    >>> from ajwt_core.workflow import reference_workflow
    >>> drawing = svg(reference_workflow())
    >>> drawing.startswith("<svg") and "create_pull_request" in drawing
    True
    """
    order = workflow.topological_order()
    depth: dict[str, int] = {}
    for step_id in order:
        before = workflow.dependencies(step_id)
        depth[step_id] = 1 + max((depth[d] for d in before), default=-1)
    columns: dict[int, list[str]] = {}
    for step_id in order:
        columns.setdefault(depth[step_id], []).append(step_id)
    consult_rows = 1 if any(workflow.steps[s].consult for s in order) else 0
    loop_band = 40 if any(workflow.steps[s].loop_to for s in order) else 0
    tallest = max(len(c) for c in columns.values())
    width = _PAD * 2 + len(columns) * _BOX_W + (len(columns) - 1) * _GAP_X
    height = _PAD * 2 + loop_band + tallest * (_BOX_H + _GAP_Y) + consult_rows * (_GAP_Y + 30)
    where: dict[str, tuple[float, float]] = {}
    for column, steps in columns.items():
        for row, step_id in enumerate(steps):
            where[step_id] = (
                float(_PAD + column * (_BOX_W + _GAP_X)),
                float(_PAD + loop_band + row * (_BOX_H + _GAP_Y)),
            )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ajwt-workflow" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="system-ui, sans-serif" font-size="12">',
        f"<title>workflow {_xml(workflow.id)} v{workflow.version}</title>",
        "<defs><marker id='wf-arrow' viewBox='0 0 10 10' refX='10' refY='5' "
        "markerWidth='7' markerHeight='7' orient='auto-start-reverse'>"
        "<path d='M 0 0 L 10 5 L 0 10 z' fill='#57606a'/></marker></defs>",
    ]
    for step_id in order:
        step = workflow.steps[step_id]
        x2, y2 = where[step_id]
        chooser = workflow.chooser_of(step_id)
        for dep, dashed in [(d, False) for d in step.after] + [(d, True) for d in step.after_any]:
            x1, y1 = where[dep]
            start = (x1 + _BOX_W, y1 + _BOX_H / 2)
            end = (x2, y2 + _BOX_H / 2)
            mid = (start[0] + end[0]) / 2
            dash = ' stroke-dasharray="5 4"' if dashed else ""
            parts.append(
                f'<path d="M {start[0]} {start[1]} C {mid} {start[1]}, {mid} {end[1]}, '
                f'{end[0]} {end[1]}" fill="none" stroke="#57606a"{dash} '
                'marker-end="url(#wf-arrow)"/>'
            )
            label = "one of" if chooser == dep else ("any of" if dashed else "")
            if label:
                parts.append(
                    f'<text x="{mid}" y="{(start[1] + end[1]) / 2 - 4}" text-anchor="middle" '
                    f'fill="#57606a" font-size="11">{label}</text>'
                )
        for target in step.loop_to:
            tx, ty = where[target]
            sx, sy = where[step_id]
            top = _PAD + loop_band / 2
            visits = workflow.steps[target].max_visits
            parts.append(
                f'<path d="M {sx + _BOX_W / 2} {sy} C {sx + _BOX_W / 2} {top}, '
                f'{tx + _BOX_W / 2} {top}, {tx + _BOX_W / 2} {ty}" fill="none" '
                'stroke="#8250df" stroke-dasharray="2 3" marker-end="url(#wf-arrow)"/>'
                f'<text x="{(sx + tx + _BOX_W) / 2}" y="{top - 4}" text-anchor="middle" '
                f'fill="#8250df" font-size="11">sent back (at most {visits} visits)</text>'
            )
    for step_id in order:
        step = workflow.steps[step_id]
        x, y = where[step_id]
        fill = "#f6f8fa" if step.is_routing else "#ddf4ff"
        stroke = "#57606a" if step.required else "#8c959f"
        dash = "" if step.required else ' stroke-dasharray="4 3"'
        tools = ", ".join(sorted(step.tools)) if step.tools else "routing (no tools)"
        extra = "needs approval" if step.approval else ""
        parts.append(
            f"<g><title>{_xml(step_id)}: agent {_xml(step.agent)}; {_xml(tools)}</title>"
            f'<rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="8" '
            f'fill="{fill}" stroke="{stroke}"{dash}/>'
            f'<text x="{x + 10}" y="{y + 18}" font-weight="700">{_xml(_clip(step_id))}</text>'
            f'<text x="{x + 10}" y="{y + 35}" fill="#57606a">{_xml(_clip(step.agent))}'
            f"{' · ' + extra if extra else ''}</text>"
            f'<text x="{x + 10}" y="{y + 52}" fill="#0969da">{_xml(_clip(tools, 30))}</text></g>'
        )
        for index, agent in enumerate(sorted(step.consult)):
            cx = x + _BOX_W / 2 + (index - (len(step.consult) - 1) / 2) * 70
            cy = _PAD + loop_band + tallest * (_BOX_H + _GAP_Y) + 10
            parts.append(
                f'<line x1="{x + _BOX_W / 2}" y1="{y + _BOX_H}" x2="{cx}" y2="{cy - 12}" '
                'stroke="#bf8700" stroke-dasharray="2 3"/>'
                f'<ellipse cx="{cx}" cy="{cy}" rx="32" ry="12" fill="#fff8c5" stroke="#bf8700">'
                f"<title>{_xml(step_id)} may consult {_xml(agent)}</title></ellipse>"
                f'<text x="{cx}" y="{cy + 4}" text-anchor="middle" font-size="10">'
                f"{_xml(_clip(agent, 10))}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def yaml_document(workflow: Workflow) -> str:
    """The workflow as a YAML document for people: the members that differ from their
    defaults only (it hashes the same: defaults are filled in before hashing).

    >>> from ajwt_core.workflow import reference_workflow
    >>> print(yaml_document(reference_workflow()).splitlines()[3])
      triage:
    """
    import yaml

    defaults = {"scopes": [], "after": [], "required": True, "approval": False}
    steps: dict[str, Any] = {}
    for step_id, body in workflow.canonical()["steps"].items():
        steps[step_id] = {
            key: value
            for key, value in body.items()
            if key == "tools" or defaults.get(key) != value
        }
    document = {"id": workflow.id, "version": workflow.version, "steps": steps}
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=88)
