"""Render the report of ``ajwt demo``: JSON, Markdown and one self-contained HTML page.

The demo runs the DESIGN §11 workflow with plain OAuth (the baseline) and with A-JWT,
sends every attack of DESIGN §9 to both, and hands this module a JSON-serialisable dict
(``summary``, ``overhead``, ``legitimate``, ``attacks``, ``delegation_tree``, ``ledger``).
Every section is optional: a missing key or an empty list renders as "nothing recorded".

Everything in the report may come from an attacker (paths, agent ids, error details), so
each value is escaped where it is written: :func:`html.escape` in HTML,
:func:`xml.sax.saxutils.escape` in the SVG, backslashes and code spans in Markdown. The
HTML page also carries a Content-Security-Policy that forbids scripts and remote loads.
The delegation tree is laid out here (layers by depth, no JavaScript, no network).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeGuard
from xml.sax.saxutils import escape as xml_escape

from ajwt_core.errors import InvalidRequest
from ajwt_core.workflow import Workflow
from ajwt_core.workflow.render import mermaid, svg

__all__ = [
    "delegation_tree_svg",
    "render_html",
    "render_markdown",
    "workflow_svg",
    "write_reports",
]

TITLE: Final = "A-JWT demo report"

# Characters XML 1.0 forbids (and HTML calls parse errors): replaced, never passed on.
_INVALID_CHARS: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_HASH: Final = re.compile(r"^(sha256:)?([0-9a-f]{16,})$")
_OVERHEAD_KEY: Final = re.compile(r"^(?P<what>.+?)_(?P<unit>ms|us|s)_(?P<stat>p\d+|mean|max|min)$")

_OVERHEAD_LABELS: Final[dict[str, str]] = {
    "mint": "Intent-token mint (IdP round trip)",
    "proof": "DPoP proof signing",
    "verify": "Resource-server verification, A-JWT",
    "bearer_verify": "Resource-server verification, plain bearer",
}
_UNITS: Final[dict[str, str]] = {"ms": "ms", "us": "µs", "s": "s"}
_MAX_TEXT: Final = 160
_MAX_SVG_TEXT: Final = 64
_MAX_CALL_LINES: Final = 12
_NONE: Final = "—"


def write_reports(report: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html into out_dir (created); return their paths.

    The keys of the result are ``"json"``, ``"md"`` and ``"html"``.

    >>> import json, tempfile
    >>> report = {"summary": {"line": "A-JWT blocked 1/1 attacks", "ok": True}, "attacks": []}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_reports(report, Path(tmp) / "demo")
    ...     print(sorted(paths), json.loads(paths["json"].read_text()) == report)
    ...     print("A-JWT blocked 1/1 attacks" in paths["html"].read_text(encoding="utf-8"))
    ['html', 'json', 'md'] True
    True
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "md": out_dir / "report.md",
        "html": out_dir / "report.html",
    }
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    paths["html"].write_text(render_html(report), encoding="utf-8")
    return paths


# --------------------------------------------------------------------------- reading


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _records(value: Any) -> list[Mapping[str, Any]]:
    """The mappings of a list; anything else (None, a string, stray items) is dropped."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _text(value: Any) -> str:
    """A value as one clean line of text ("" for None)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = value if isinstance(value, str) else str(value)
    return _INVALID_CHARS.sub("\ufffd", " ".join(text.split()))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_hash(value: Any) -> str:
    """``sha256:0123456789ab…`` for a digest; other values unchanged."""
    text = _text(value)
    match = _HASH.match(text)
    if match is None:
        return text
    return f"{match.group(1) or ''}{match.group(2)[:12]}…"


def _chain(value: Any) -> str:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, Sequence):
        return " → ".join(_text(item) for item in value)
    return _text(value)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _text(value)
    if isinstance(value, int):
        return f"{value:,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _timestamp(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _text(value)
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return _text(value)


def _call_line(call: Mapping[str, Any]) -> str:
    """``GET /repos (list_repos)``: a call as the delegation tree shows it."""
    line = f"{_text(call.get('method'))} {_text(call.get('path'))}".strip()
    tool = _text(call.get("tool"))
    return f"{line} ({tool})" if tool else line


def _accepted(call: Mapping[str, Any]) -> bool:
    status = call.get("status")
    return isinstance(status, int) and not isinstance(status, bool) and 200 <= status < 300


@dataclass(frozen=True)
class _Summary:
    line: str
    ok: bool


def _summary(report: Mapping[str, Any]) -> _Summary:
    """The summary as given, or worked out from the attacks and calls when it is missing."""
    summary = _mapping(report.get("summary"))
    attacks = _records(report.get("attacks"))
    blocked = sum(1 for a in attacks if _mapping(a.get("ajwt")).get("blocked") is True)
    baseline = sum(1 for a in attacks if _mapping(a.get("baseline")).get("blocked") is True)
    calls = _records(_mapping(report.get("legitimate")).get("ajwt"))
    accepted = sum(1 for c in calls if _accepted(c))
    line = _text(summary.get("line")) or (
        f"A-JWT blocked {blocked}/{len(attacks)} attacks; "
        f"baseline blocked {baseline}/{len(attacks)}; "
        f"legitimate calls accepted {accepted}/{len(calls)}"
    )
    ok = summary.get("ok")
    if not isinstance(ok, bool):
        ok = blocked == len(attacks) and accepted == len(calls)
    return _Summary(line, ok)


@dataclass(frozen=True)
class _Outcome:
    blocked: bool | None
    label: str  # "BLOCKED", "ALLOWED" or "not run"
    status: str
    error: str
    reason: str
    detail: str


def _outcome(value: Any) -> _Outcome:
    outcome = _mapping(value)
    blocked = outcome.get("blocked")
    if not isinstance(blocked, bool):
        blocked = None
    label = {True: "BLOCKED", False: "ALLOWED", None: "not run"}[blocked]
    return _Outcome(
        blocked=blocked,
        label=label,
        status=_text(outcome.get("status")),
        error=_text(outcome.get("error")),
        reason=_text(outcome.get("reason")),
        detail=_clip(_text(outcome.get("detail")), _MAX_TEXT),
    )


@dataclass(frozen=True)
class _Metric:
    label: str
    value: str


def _overhead(report: Mapping[str, Any]) -> list[_Metric]:
    """The overhead numbers that are present, with a readable label and unit each."""
    overhead = _mapping(report.get("overhead"))
    metrics: list[_Metric] = []
    for key, value in overhead.items():
        match = _OVERHEAD_KEY.match(str(key))
        if match is not None:
            what = _OVERHEAD_LABELS.get(match["what"], match["what"].replace("_", " "))
            label = f"{what} ({match['stat']})"
            metrics.append(_Metric(label, f"{_number(value)} {_UNITS[match['unit']]}"))
        elif key == "calls":
            metrics.append(_Metric("Calls measured", _number(value)))
        else:
            metrics.append(_Metric(_text(key).replace("_", " "), _number(value)))
    verify, bearer = overhead.get("verify_us_p50"), overhead.get("bearer_verify_us_p50")
    if _is_number(verify) and _is_number(bearer):
        extra = f"{verify - bearer:+,.0f} µs"
        metrics.append(_Metric("A-JWT verification over plain bearer (p50)", extra))
    return metrics


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ledger_data(kind: str, data: Mapping[str, Any]) -> str:
    """A one-line summary of a ledger entry's ``data`` (DESIGN §8 entry kinds)."""

    def get(key: str) -> str:
        return _text(data.get(key))

    if kind == "run_started":
        version = f"v{get('workflow_version')}" if get("workflow_version") else ""
        workflow = " ".join(filter(None, [get("workflow_id"), version]))
        parts = [f"workflow {workflow}" if workflow else "", f"by {get('initiated_by')}"]
        text = " ".join(p for p in parts if p and p != "by ")
    elif kind == "token_minted":
        text = " · ".join(
            filter(None, [get("agent"), get("step"), get("tool"), get("scope"), get("jti")])
        )
        if data.get("chain"):
            text += f" · chain {_chain(data['chain'])}"
    elif kind == "delegation":
        text = f"{get('from')} → {get('to')} ({get('from_step')} → {get('to_step')})"
        if data.get("scope"):
            text += f" · {get('scope')}"
        if data.get("assertion"):
            text += f" · {_short_hash(data['assertion'])}"
    elif kind == "mint_refused":
        who = " · ".join(filter(None, [get("agent"), get("step"), get("tool")]))
        text = f"{who}: {get('reason') or get('error')}"
    elif kind in ("step_completed", "step_approved"):
        who = get("agent") or get("approved_by")
        text = f"step {get('step')}" + (f" by {who}" if who else "")
    else:
        text = ", ".join(f"{_text(k)}={_short_hash(v)}" for k, v in data.items())
    return _clip(text or _NONE, _MAX_TEXT)


@dataclass(frozen=True)
class _Ledger:
    entries: list[Mapping[str, Any]]
    head: str
    ok: bool | None
    verdict: str


def _ledger(report: Mapping[str, Any]) -> _Ledger:
    ledger = _mapping(report.get("ledger"))
    entries = _records(ledger.get("entries"))
    head = _text(ledger.get("head")) or (_text(entries[-1].get("entry_hash")) if entries else "")
    ok = ledger.get("ok")
    if not isinstance(ok, bool):
        ok = None
    verdict = {
        True: "✔ hash chain verified",
        False: "✘ hash chain did NOT verify",
        None: "hash chain not verified",
    }[ok]
    return _Ledger(entries, head, ok, verdict)


# --------------------------------------------------------------------------- delegation tree


@dataclass
class _Node:
    key: str  # "" for the user at the root
    title: str
    subtitle: str
    tooltip: str
    lines: list[str]
    layer: int = 0
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0
    out_edges: list[_Edge] = field(default_factory=list)
    in_edges: list[_Edge] = field(default_factory=list)


@dataclass
class _Edge:
    source: _Node
    target: _Node
    labels: list[str]  # empty: the agent acts for the user directly
    tooltip: str
    back: bool = False  # closes a cycle: drawn as an arc round the right-hand side
    start_x: float = 0.0  # where it leaves the source's bottom edge
    end_x: float = 0.0  # where it enters the target's top edge
    label_top: float = 0.0  # its labels are stacked with the others entering its target
    lane: float | None = None  # x of the free lane an edge that skips layers runs down
    loop_x: float = 0.0  # how far right a back edge arcs


# Sizes in SVG user units. Text is monospace so its width is known without a font.
_CHAR: Final = 0.6  # em per character
_TITLE_PX: Final = 13
_SMALL_PX: Final = 11
_LINE: Final = 15
_PAD: Final = 10
_NODE_MIN_WIDTH: Final = 130
_H_GAP: Final = 48
_V_GAP: Final = 70
_LABEL_LINE: Final = 13
_MARGIN: Final = 30  # > _H_GAP / 2, so a lane round the outside stays in the drawing
_CURVE: Final = 30  # height of the bend in which an edge moves sideways
_ARROW: Final = 10
_LOOP: Final = 40


def _text_width(text: str, px: int) -> float:
    return len(text) * px * _CHAR


def _tree_nodes(tree: Mapping[str, Any]) -> tuple[_Node, list[_Node]]:
    """The user node and the agent nodes (in order of first mention), edges attached."""
    user_name = _text(tree.get("user")) or "user"
    run_id = _text(tree.get("run_id"))
    user = _Node("", user_name, f"run {run_id}" if run_id else "", user_name, [])

    agents: dict[str, _Node] = {}

    def agent(agent_id: str) -> _Node:
        node = agents.get(agent_id)
        if node is None:
            node = _Node(agent_id, agent_id, "", agent_id, [])
            agents[agent_id] = node
        return node

    for record in _records(tree.get("agents")):
        agent_id = _text(record.get("id"))
        if not agent_id:
            continue
        node = agent(agent_id)
        checksum = _text(record.get("checksum"))
        registration = _text(record.get("registration_id"))
        node.subtitle = _short_hash(checksum)
        node.tooltip = "\n".join(filter(None, [agent_id, checksum, registration]))

    pairs: dict[tuple[str, str], _Edge] = {}
    for record in _records(tree.get("delegations")):
        source, target = _text(record.get("from")), _text(record.get("to"))
        if not source or not target:
            continue
        steps = f"{_text(record.get('from_step')) or '?'} → {_text(record.get('to_step')) or '?'}"
        scope = _text(record.get("scope"))
        label = f"{steps} · {scope}" if scope else steps
        tip = f"{source} → {target}: {label} (assertion {_text(record.get('assertion'))})"
        edge = pairs.get((source, target))
        if edge is None:
            edge = _Edge(agent(source), agent(target), [], "")
            pairs[source, target] = edge
        edge.labels.append(label)
        edge.tooltip = "\n".join(filter(None, [edge.tooltip, tip]))

    for call in _records(tree.get("calls")):
        agent_id = _text(call.get("agent"))
        owner = agent(agent_id) if agent_id else user
        owner.lines.append(_call_line(call))

    edges = list(pairs.values())
    for edge in edges:
        edge.source.out_edges.append(edge)
        edge.target.in_edges.append(edge)
    # Agents nobody delegated to act for the user: they hang off the root. So does the
    # first agent of a delegation cycle that no root reaches, so every agent is drawn.
    delegated = {edge.target.key for edge in edges if edge.source is not edge.target}
    for node in agents.values():
        if node.key not in delegated:
            _hang_off(user, node)
    reached = _reachable(user)
    for node in agents.values():
        if id(node) not in reached:
            _hang_off(user, node)
            reached |= _reachable(node)
    return user, list(agents.values())


def _hang_off(user: _Node, node: _Node) -> None:
    edge = _Edge(user, node, [], f"{user.title} → {node.key}")
    user.out_edges.append(edge)
    node.in_edges.append(edge)


def _reachable(start: _Node) -> set[int]:
    seen = {id(start)}
    todo = [start]
    while todo:
        for edge in todo.pop().out_edges:
            if id(edge.target) not in seen:
                seen.add(id(edge.target))
                todo.append(edge.target)
    return seen


def _assign_layers(user: _Node) -> None:
    """Longest-path layering; edges that close a cycle are marked ``back`` and skipped."""
    state: dict[int, str] = {id(user): "open"}
    finished: list[_Node] = []  # reversed, a topological order of the forward edges
    # Iterative DFS, so a long delegation chain cannot hit the recursion limit.
    stack: list[tuple[_Node, int]] = [(user, 0)]
    while stack:
        node, index = stack.pop()
        if index == len(node.out_edges):
            state[id(node)] = "done"
            finished.append(node)
            continue
        stack.append((node, index + 1))
        edge = node.out_edges[index]
        seen = state.get(id(edge.target))
        if seen == "open":
            edge.back = True
        elif seen is None:
            state[id(edge.target)] = "open"
            stack.append((edge.target, 0))
    for node in reversed(finished):
        for edge in node.out_edges:
            if not edge.back:
                edge.target.layer = max(edge.target.layer, node.layer + 1)


def _size(node: _Node) -> None:
    node.lines = [_clip(line, _MAX_SVG_TEXT) for line in node.lines]
    if len(node.lines) > _MAX_CALL_LINES:
        hidden = len(node.lines) - _MAX_CALL_LINES + 1
        node.lines = [*node.lines[: _MAX_CALL_LINES - 1], f"… and {hidden} more calls"]
    node.title = _clip(node.title, _MAX_SVG_TEXT)
    node.subtitle = _clip(node.subtitle, _MAX_SVG_TEXT)
    widths = [_text_width(node.title, _TITLE_PX), _text_width(node.subtitle, _SMALL_PX)]
    widths += [_text_width(line, _SMALL_PX) for line in node.lines]
    node.width = max(_NODE_MIN_WIDTH, max(widths) + 2 * _PAD)
    rows = 1 + (1 if node.subtitle else 0)
    node.height = 2 * _PAD + rows * _LINE + (len(node.lines) * _LINE + 6 if node.lines else 0)


def _place(user: _Node, agents: list[_Node], edges: list[_Edge]) -> tuple[float, float]:
    """Give every node its x/y and every edge its anchors; return the drawing's size."""
    nodes = [user, *agents]
    for node in nodes:
        _size(node)
    layers: dict[int, list[_Node]] = {}
    for node in nodes:
        layers.setdefault(node.layer, []).append(node)

    # One top-down pass of the barycentre heuristic: a node sits under its delegators.
    centre: dict[int, float] = {}
    placed: list[list[_Node]] = []
    for depth in sorted(layers):
        members = layers[depth]
        rank = {id(node): index for index, node in enumerate(members)}

        def key(node: _Node, rank: dict[int, int] = rank) -> tuple[float, int]:
            parents = [centre[id(e.source)] for e in node.in_edges if id(e.source) in centre]
            return (sum(parents) / len(parents) if parents else 0.0, rank[id(node)])

        members.sort(key=key)
        x = 0.0
        for node in members:
            node.x = x
            centre[id(node)] = x + node.width / 2
            x += node.width + _H_GAP
        placed.append(members)

    layer_widths = [sum(n.width for n in row) + _H_GAP * (len(row) - 1) for row in placed]
    content_width = max(layer_widths)
    y = float(_MARGIN)
    for index, (row, row_width) in enumerate(zip(placed, layer_widths, strict=True)):
        if index:
            # Room for the bend below the layer above and the labels stacked over each node.
            stacks = max(_label_stack(node) for node in row)
            y += max(_V_GAP, _CURVE + stacks + _ARROW + 16)
        shift = _MARGIN + (content_width - row_width) / 2
        for node in row:
            node.x += shift
            node.y = y
        y += max(node.height for node in row)

    _anchor(nodes)
    forward = [edge for edge in edges if not edge.back]
    for edge in forward:
        if edge.target.layer > edge.source.layer + 1:
            between = [n for layer in placed for n in layer
                       if edge.source.layer < n.layer < edge.target.layer]  # fmt: skip
            edge.lane = _free_lane(between, edge.start_x, edge.end_x)
    width = content_width + 2 * _MARGIN
    loops = [edge for edge in edges if edge.back]
    for index, edge in enumerate(loops):
        edge.loop_x = content_width + _MARGIN + _LOOP * (index + 1)
        label_width = max((_text_width(label, _SMALL_PX) for label in edge.labels), default=0.0)
        width = max(width, edge.loop_x + 8 + label_width + _MARGIN)
    bottom = max(node.y + node.height for node in nodes)
    return width, bottom + _MARGIN + 2 * _LINE  # room for the legend


def _label_height(edge: _Edge) -> float:
    return len(edge.labels) * _LABEL_LINE + 4 if edge.labels else 0.0


def _label_stack(node: _Node) -> float:
    """Height of the labels of the delegations entering ``node``, stacked above it."""
    return sum(_label_height(e) + 2 for e in node.in_edges if not e.back and e.labels)


def _anchor(nodes: list[_Node]) -> None:
    """Spread the edges along each node's bottom and top edges, ordered by where their
    other end is, so that edges leaving or entering one node do not cross there; stack
    the labels of the edges entering a node above it, nearest first."""
    for node in nodes:
        leaving = sorted(
            (e for e in node.out_edges if not e.back), key=lambda e: e.target.x + e.target.width
        )
        for index, edge in enumerate(leaving):
            edge.start_x = node.x + node.width * (index + 1) / (len(leaving) + 1)
        entering = sorted(
            (e for e in node.in_edges if not e.back), key=lambda e: e.source.x + e.source.width
        )
        bottom = node.y - 2 - _ARROW
        for index, edge in enumerate(entering):
            edge.end_x = node.x + node.width * (index + 1) / (len(entering) + 1)
            edge.label_top = bottom - _label_height(edge)
            if edge.labels:
                bottom = edge.label_top - 2


def _free_lane(between: list[_Node], start: float, end: float) -> float:
    """An x at which a vertical line misses every node of the layers an edge skips:
    a gap between two nodes or the outside of the widest layer, the nearest one."""
    boxes = [(n.x - 6, n.x + n.width + 6) for n in between]
    candidates = [n.x - _H_GAP / 2 for n in between]
    candidates += [n.x + n.width + _H_GAP / 2 for n in between]
    free = [x for x in candidates if not any(left < x < right for left, right in boxes)]
    return min(free, key=lambda x: (abs(x - start) + abs(x - end), x))


def _attr(value: str) -> str:
    return xml_escape(value, {'"': "&quot;"})


def _svg_text(value: str) -> str:
    return xml_escape(value)


def _fmt(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _bend(x_from: float, x_to: float, y: float) -> str:
    """A smooth sideways step from (x_from, y) to (x_to, y + _CURVE), as a path command."""
    middle = y + _CURVE / 2
    return (
        f"C{_fmt(x_from)},{_fmt(middle)} {_fmt(x_to)},{_fmt(middle)} "
        f"{_fmt(x_to)},{_fmt(y + _CURVE)}"
    )


def _draw_edge(edge: _Edge) -> tuple[str, str]:
    """The edge's path and its label, as two SVG fragments (labels are drawn on top)."""
    source, target = edge.source, edge.target
    if edge.back:
        # Closes a cycle (or is a self-delegation): arc round the right of the drawing,
        # from the source's right side to the target's.
        x0, y0 = source.x + source.width, source.y + source.height / 3
        x3, y3 = target.x + target.width + 2, target.y + target.height * 2 / 3
        bend = edge.loop_x
        path = (
            f"M{_fmt(x0)},{_fmt(y0)} L{_fmt(bend - 10)},{_fmt(y0)} "
            f"Q{_fmt(bend)},{_fmt(y0)} {_fmt(bend)},{_fmt((y0 + y3) / 2)} "
            f"Q{_fmt(bend)},{_fmt(y3)} {_fmt(bend - 10)},{_fmt(y3)} L{_fmt(x3)},{_fmt(y3)}"
        )
        label_x, label_bottom, anchor = bend + 6, (y0 + y3) / 2, "start"
    else:
        # Down from the delegator, sideways in a bend just below it, then straight down
        # into the delegate, so that the label sits on the straight part. An edge that
        # skips layers first runs down a free lane and bends again above its labels.
        x0, y0 = edge.start_x, source.y + source.height
        x3, y3 = edge.end_x, target.y - 2
        path = f"M{_fmt(x0)},{_fmt(y0)} "
        if edge.lane is not None:
            turn = edge.label_top - _CURVE
            path += _bend(x0, edge.lane, y0) + f" L{_fmt(edge.lane)},{_fmt(turn)} "
            path += _bend(edge.lane, x3, turn)
        else:
            path += _bend(x0, x3, y0)
        path += f" L{_fmt(x3)},{_fmt(y3)}"
        label_x, label_bottom, anchor = x3, edge.label_top + _label_height(edge), "middle"
    kind = "delegation" if edge.labels else "root"
    marker = ' marker-end="url(#ajwt-arrow)"' if edge.labels else ""
    drawn = (
        f'<path class="{kind}" d="{path}"{marker}><title>{_svg_text(edge.tooltip)}</title></path>'
    )
    if not edge.labels:
        return drawn, ""
    labels = [_clip(label, _MAX_SVG_TEXT) for label in edge.labels]
    width = max(_text_width(label, _SMALL_PX) for label in labels) + 8
    height = len(labels) * _LABEL_LINE + 4
    left = label_x - width / 2 if anchor == "middle" else label_x - 4
    top = label_bottom - height
    spans = "".join(
        f'<tspan x="{_fmt(label_x)}" y="{_fmt(top + _LABEL_LINE * (i + 1) - 1)}">'
        f"{_svg_text(label)}</tspan>"
        for i, label in enumerate(labels)
    )
    label = (
        f'<rect class="label" x="{_fmt(left)}" y="{_fmt(top)}" width="{_fmt(width)}" '
        f'height="{_fmt(height)}" rx="3"/>'
        f'<text class="label" text-anchor="{anchor}">{spans}</text>'
    )
    return drawn, label


def _draw_node(node: _Node) -> str:
    x, y = node.x, node.y
    parts = [
        f'<g class="agent" data-agent="{_attr(node.key)}">' if node.key else '<g class="user">',
        f"<title>{_svg_text(node.tooltip)}</title>",
        f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(node.width)}" '
        f'height="{_fmt(node.height)}" rx="6"/>',
    ]
    baseline = y + _PAD + 12
    parts.append(
        f'<text class="name" x="{_fmt(x + _PAD)}" y="{_fmt(baseline)}">'
        f"{_svg_text(node.title)}</text>"
    )
    if node.subtitle:
        baseline += _LINE
        parts.append(
            f'<text class="sub" x="{_fmt(x + _PAD)}" y="{_fmt(baseline)}">'
            f"{_svg_text(node.subtitle)}</text>"
        )
    if node.lines:
        rule = baseline + 7
        parts.append(
            f'<line x1="{_fmt(x)}" y1="{_fmt(rule)}" x2="{_fmt(x + node.width)}" '
            f'y2="{_fmt(rule)}"/>'
        )
        baseline += 6
        for line in node.lines:
            baseline += _LINE
            parts.append(
                f'<text class="call" x="{_fmt(x + _PAD)}" y="{_fmt(baseline)}">'
                f"{_svg_text(line)}</text>"
            )
    parts.append("</g>")
    return "".join(parts)


# Scoped to the drawing: embedded in the HTML page, an SVG <style> applies page-wide.
_SVG_STYLE: Final = " ".join(
    f".ajwt-tree {rule}"
    for rule in [
        "text{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;fill:#1f2328}",
        ".name{font-size:13px;font-weight:bold}",
        ".sub,.call,.label,.legend{font-size:11px}",
        ".sub,.legend{fill:#59636e}",
        ".agent rect{fill:#f6f8fa;stroke:#57606a}",
        ".user rect{fill:#ddf4ff;stroke:#0969da}",
        "line{stroke:#d0d7de}",
        "path.delegation,path.root{fill:none}",
        "path.delegation{stroke:#0969da;stroke-width:1.5}",
        "path.root{stroke:#8c959f;stroke-dasharray:4 3}",
        "text.label{fill:#0550ae}",
        "rect.label{fill:#fff;fill-opacity:0.92}",
        ".arrow{fill:#0969da}",
    ]
)


def _workflow(value: Any) -> Workflow | None:
    try:
        return Workflow.from_mapping(value) if value is not None else None
    except InvalidRequest:
        return None


def workflow_svg(value: Any) -> str:
    """The report's workflow drawn as SVG (DESIGN §6.3), or a note if it has none."""
    workflow = _workflow(value)
    if workflow is None:
        return "<p class='meta'>The report records no workflow.</p>"
    return svg(workflow)


def delegation_tree_svg(tree: Mapping[str, Any] | None) -> str:
    """The delegation tree of the A-JWT run as one standalone SVG element.

    The user is the root; each agent is a box holding the API calls it made; each signed
    delegation assertion is an arrow from delegator to delegate labelled
    ``from_step → to_step · scope``; agents nobody delegated to hang off the user on a
    dashed line.

    >>> svg = delegation_tree_svg({
    ...     "user": "user:alice",
    ...     "agents": [{"id": "supervisor"}, {"id": "planner"}],
    ...     "delegations": [{"from": "supervisor", "to": "planner",
    ...                      "from_step": "triage", "to_step": "plan"}],
    ...     "calls": [{"method": "GET", "path": "/repos", "tool": "list_repos",
    ...                "agent": "supervisor"}],
    ... })
    >>> svg.startswith("<svg"), "triage → plan" in svg, "GET /repos (list_repos)" in svg
    (True, True, True)
    """
    user, agents = _tree_nodes(_mapping(tree))
    _assign_layers(user)
    edges = [edge for node in [user, *agents] for edge in node.out_edges]
    width, height = _place(user, agents, edges)

    paths: list[str] = []
    labels: list[str] = []
    for edge in edges:
        path, label = _draw_edge(edge)
        paths.append(path)
        labels.append(label)
    legend = (
        "solid arrow: signed delegation assertion (from_step → to_step · scope); "
        "dashed: acts for the user directly"
        if agents
        else "no agents recorded"
    )
    width = max(width, _text_width(legend, _SMALL_PX) + 2 * _MARGIN)
    legend = (
        f'<text class="legend" x="{_MARGIN}" y="{_fmt(height - _MARGIN + 4)}">'
        f"{_svg_text(legend)}</text>"
    )
    run = _text(_mapping(tree).get("run_id"))
    title = f"Delegation tree of run {run}" if run else "Delegation tree"
    return "".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" class="ajwt-tree" role="img" '
            f'width="{_fmt(width)}" height="{_fmt(height)}" '
            f'viewBox="0 0 {_fmt(width)} {_fmt(height)}">',
            f"<title>{_svg_text(title)}</title>",
            f"<style>{_SVG_STYLE}</style>",
            '<defs><marker id="ajwt-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
            'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            '<path class="arrow" d="M0,0 L10,5 L0,10 z"/></marker></defs>',
            *paths,
            *(_draw_node(node) for node in [user, *agents]),
            *filter(None, labels),
            legend,
            "</svg>",
        ]
    )


# --------------------------------------------------------------------------- HTML


def _h(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _cell(value: Any, *, code: bool = False) -> str:
    text = _text(value)
    if not text:
        return f"<td>{_NONE}</td>"
    return f"<td><code>{_h(text)}</code></td>" if code else f"<td>{_h(text)}</td>"


def _outcome_html(outcome: _Outcome, *, expect_block: bool) -> str:
    css = {True: "blocked", False: "allowed", None: "missing"}[outcome.blocked]
    mark = {True: "✔", False: "✘", None: "?"}[outcome.blocked]
    code = " ".join(filter(None, [outcome.status, outcome.error]))
    parts = [f'<span class="badge {css}">{mark} {outcome.label}</span>']
    if code:
        parts.append(f" <span class='code'>{_h(code)}</span>")
    if outcome.reason:
        parts.append(f"<br><code>{_h(outcome.reason)}</code>")
    if outcome.detail:
        parts.append(f'<div class="detail">{_h(outcome.detail)}</div>')
    # An attack A-JWT let through is outlined, on top of its "ALLOWED" badge.
    cell = '<td class="gap">' if expect_block and outcome.blocked is not True else "<td>"
    return f"{cell}{''.join(parts)}</td>"


def _attacks_html(report: Mapping[str, Any]) -> str:
    attacks = _records(report.get("attacks"))
    if not attacks:
        return "<p class='empty'>No attacks were recorded.</p>"
    rows = []
    for attack in attacks:
        name = f"<strong>{_h(attack.get('name'))}</strong>"
        if attack.get("description"):
            name += f'<div class="detail">{_h(attack.get("description"))}</div>'
        ajwt = _outcome(attack.get("ajwt"))
        rows.append(
            f'<tr class="{"ok" if ajwt.blocked else "gap"}">'
            f"<th scope='row'>{_h(attack.get('id'))}</th><td>{name}</td>"
            f"{_cell(attack.get('stride'))}"
            f"{_outcome_html(_outcome(attack.get('baseline')), expect_block=False)}"
            f"{_outcome_html(ajwt, expect_block=True)}"
            f"{_cell(attack.get('check'))}</tr>"
        )
    head = (
        "<tr><th>ID</th><th>Attack</th><th>STRIDE</th><th>Baseline (plain OAuth)</th>"
        "<th>A-JWT (reason)</th><th>Check that blocks it</th></tr>"
    )
    return f"<table class='attacks'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _overhead_html(report: Mapping[str, Any]) -> str:
    metrics = _overhead(report)
    if not metrics:
        return "<p class='empty'>No overhead was measured.</p>"
    rows = "".join(
        f"<tr><th scope='row'>{_h(m.label)}</th><td class='num'>{_h(m.value)}</td></tr>"
        for m in metrics
    )
    return f"<table class='overhead'><tbody>{rows}</tbody></table>"


def _calls_html(calls: list[Mapping[str, Any]], caption: str) -> str:
    accepted = sum(1 for call in calls if _accepted(call))
    heading = f"<h3>{_h(caption)} <span class='count'>{accepted}/{len(calls)} accepted</span></h3>"
    if not calls:
        return heading + "<p class='empty'>No calls were recorded.</p>"
    rows = []
    for index, call in enumerate(calls, start=1):
        ok = _accepted(call)
        status = f"{_h(call.get('status')) or _NONE} {'✔' if ok else '✘'}"
        rows.append(
            f"<tr><td class='num'>{index}</td>{_cell(call.get('method'))}"
            f"{_cell(call.get('path'), code=True)}"
            f"<td class='{'accepted' if ok else 'refused'}'>{status}</td>"
            f"{_cell(call.get('agent'))}{_cell(call.get('step'))}"
            f"{_cell(call.get('tool'), code=True)}{_cell(_chain(call.get('chain')))}"
            f"{_cell(call.get('user'))}</tr>"
        )
    head = (
        "<tr><th>#</th><th>Method</th><th>Path</th><th>Status</th><th>Agent</th>"
        "<th>Step</th><th>Tool</th><th>Delegation chain</th><th>User</th></tr>"
    )
    return (
        f"{heading}<table class='calls'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _delegations_html(tree: Mapping[str, Any]) -> str:
    delegations = _records(tree.get("delegations"))
    if not delegations:
        return "<p class='empty'>No delegation assertions were recorded.</p>"
    rows = "".join(
        f"<tr>{_cell(d.get('from'))}{_cell(d.get('to'))}{_cell(d.get('from_step'))}"
        f"{_cell(d.get('to_step'))}{_cell(d.get('scope'), code=True)}"
        f"<td><code title='{_h(d.get('assertion'))}'>{_h(_short_hash(d.get('assertion')))}"
        "</code></td></tr>"
        for d in delegations
    )
    head = (
        "<tr><th>From</th><th>To</th><th>From step</th><th>To step</th><th>Scope</th>"
        "<th>Assertion</th></tr>"
    )
    return f"<table class='delegations'><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _ledger_html(report: Mapping[str, Any]) -> str:
    ledger = _ledger(report)
    css = {True: "pass", False: "fail", None: "unknown"}[ledger.ok]
    status = (
        f"<p class='verdict {css}'><strong>{_h(ledger.verdict)}</strong>: "
        f"{len(ledger.entries)} entries"
    )
    run = _text(_mapping(report.get("ledger")).get("run_id"))
    if run:
        status += f" for run <code>{_h(run)}</code>"
    if ledger.head:
        status += f"; head <code>{_h(ledger.head)}</code>"
    status += "</p>"
    if not ledger.entries:
        return status
    rows = []
    for entry in ledger.entries:
        kind = _text(entry.get("kind"))
        rows.append(
            f"<tr>{_cell(entry.get('seq'))}{_cell(kind, code=True)}"
            f"{_cell(_timestamp(entry.get('at')))}"
            f"<td><code title='{_h(entry.get('prev_hash'))}'>"
            f"{_h(_short_hash(entry.get('prev_hash')))}</code></td>"
            f"<td><code title='{_h(entry.get('entry_hash'))}'>"
            f"{_h(_short_hash(entry.get('entry_hash')))}</code></td>"
            f"{_cell(_ledger_data(kind, _mapping(entry.get('data'))))}</tr>"
        )
    head = (
        "<tr><th>Seq</th><th>Kind</th><th>At (UTC)</th><th>Previous hash</th>"
        "<th>Entry hash</th><th>Data</th></tr>"
    )
    return (
        f"{status}<table class='ledger'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
    )


_CSS: Final = """
:root{color-scheme:light}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
 margin:0 auto;max-width:1200px;padding:24px}
h1{margin:0 0 4px}h2{margin-top:36px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta,.detail,.empty,.count{color:#59636e}.detail{font-size:12px;margin-top:2px}
.summary{font-size:20px;font-weight:600;padding:14px 18px;border-radius:8px;border:2px solid}
.summary.pass{background:#dafbe1;border-color:#1a7f37;color:#116329}
.summary.fail{background:#ffebe9;border-color:#cf222e;color:#a40e26}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top}
thead th{background:#f6f8fa}td.num{text-align:right;white-space:nowrap}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
.badge{display:inline-block;font-weight:700;font-size:12px;padding:1px 6px;border-radius:4px}
.badge.blocked{background:#dafbe1;color:#116329;border:1px solid #1a7f37}
.badge.allowed{background:#ffebe9;color:#a40e26;border:1px solid #cf222e}
.badge.missing{background:#eaeef2;color:#59636e;border:1px dashed #8c959f}
tr.gap th{background:#ffebe9}td.gap{outline:2px solid #cf222e}
td.accepted{color:#116329}td.refused{color:#a40e26;font-weight:700}
.verdict.pass{color:#116329}.verdict.fail{color:#a40e26}.verdict.unknown{color:#59636e}
.figure{overflow-x:auto;border:1px solid #d0d7de;border-radius:8px;padding:8px;background:#fff}
.figures{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.figures h3{margin:0 0 6px}
"""


def render_html(report: Mapping[str, Any]) -> str:
    """The whole report as one self-contained HTML page (inline CSS and SVG, no scripts)."""
    summary = _summary(report)
    tree = _mapping(report.get("delegation_tree"))
    legitimate = _mapping(report.get("legitimate"))
    meta = " · ".join(
        filter(
            None,
            [
                f"framework {_h(report.get('framework'))}" if report.get("framework") else "",
                f"generated {_h(report.get('generated_at'))}" if report.get("generated_at") else "",
                f"report version {_h(report.get('version'))}" if report.get("version") else "",
            ],
        )
    )
    verdict = "PASS" if summary.ok else "FAIL"
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{TITLE}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<header><h1>{TITLE}</h1><p class='meta'>{meta}</p></header>",
        f'<p class="summary {verdict.lower()}" role="status">'
        f"{'✔' if summary.ok else '✘'} {verdict}: {_h(summary.line)}</p>",
        "<section id='attacks'><h2>Attacks (DESIGN §9)</h2>",
        "<p class='meta'>Each attack is sent to the same workflow secured with plain OAuth "
        "bearer tokens (baseline) and with A-JWT.</p>",
        _attacks_html(report),
        "</section>",
        "<section id='overhead'><h2>Overhead</h2>",
        _overhead_html(report),
        "</section>",
        "<section id='delegation'><h2>Workflow and delegation tree (A-JWT run)</h2>",
        "<div class='figures'>",
        f"<div class='figure'><h3>Workflow</h3>{workflow_svg(report.get('workflow'))}</div>",
        f"<div class='figure'><h3>Delegations</h3>{delegation_tree_svg(tree)}</div>",
        "</div>",
        "<h3>Signed delegations</h3>",
        _delegations_html(tree),
        "</section>",
        "<section id='legitimate'><h2>Legitimate calls</h2>",
        _calls_html(_records(legitimate.get("baseline")), "Baseline (plain OAuth)"),
        _calls_html(_records(legitimate.get("ajwt")), "A-JWT"),
        "</section>",
        "<section id='ledger'><h2>Run ledger (DESIGN §8)</h2>",
        _ledger_html(report),
        "</section>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- Markdown

# "_" only at a word boundary: inside a word (list_repos) it never makes emphasis.
_MD_SPECIAL: Final = re.compile(r"([\\`*\[\]<>|~&#]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def _md(value: Any) -> str:
    """Prose for Markdown: every character that could start markup is backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", _text(value)) or _NONE


def _md_code(value: Any) -> str:
    """A code span that holds any text; ``|`` is escaped so it cannot split a table cell."""
    text = _text(value)
    if not text:
        return _NONE
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}".replace("|", "\\|")


def _md_outcome(outcome: _Outcome) -> str:
    mark = {True: "✔", False: "✘", None: "?"}[outcome.blocked]
    text = f"{mark} **{outcome.label}**"
    if outcome.status:
        text += f" {_md(outcome.status)}"
    if outcome.error:
        text += f" {_md_code(outcome.error)}"
    if outcome.reason:
        text += f" {_md_code(outcome.reason)}"
    return text


def _md_table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _md_calls(calls: list[Mapping[str, Any]], caption: str) -> list[str]:
    accepted = sum(1 for call in calls if _accepted(call))
    lines = [f"### {caption} ({accepted}/{len(calls)} accepted)", ""]
    if not calls:
        return [*lines, "No calls were recorded.", ""]
    rows = [
        [
            str(index),
            _md(call.get("method")),
            _md_code(call.get("path")),
            f"{_md(call.get('status'))} {'✔' if _accepted(call) else '✘'}",
            _md(call.get("agent")),
            _md(call.get("step")),
            _md_code(call.get("tool")),
            _md(_chain(call.get("chain"))),
            _md(call.get("user")),
        ]
        for index, call in enumerate(calls, start=1)
    ]
    head = ["#", "Method", "Path", "Status", "Agent", "Step", "Tool", "Chain", "User"]
    return [*lines, *_md_table(head, rows), ""]


def render_markdown(report: Mapping[str, Any]) -> str:
    """The report as GitHub-flavoured Markdown, with the same sections as the HTML.

    >>> text = render_markdown({
    ...     "summary": {"line": "A-JWT blocked 1/1 attacks", "ok": True},
    ...     "attacks": [{"id": "T2", "name": "Token replay", "stride": "Spoofing",
    ...                  "baseline": {"blocked": False, "status": 200},
    ...                  "ajwt": {"blocked": True, "status": 401, "reason": "replayed"}}],
    ... })
    >>> print(text.splitlines()[2])
    **✔ PASS: A-JWT blocked 1/1 attacks**
    >>> print([line for line in text.splitlines() if line.startswith("| T2")][0])
    | T2 | Token replay | Spoofing | ✘ **ALLOWED** 200 | ✔ **BLOCKED** 401 `replayed` | — |
    """
    summary = _summary(report)
    verdict = "✔ PASS" if summary.ok else "✘ FAIL"
    lines = [f"# {TITLE}", "", f"**{verdict}: {_md(summary.line)}**", ""]
    meta = [
        f"{label} {_md(report.get(key))}"
        for key, label in (
            ("framework", "Framework"),
            ("generated_at", "generated"),
            ("version", "report version"),
        )
        if report.get(key) is not None
    ]
    if meta:
        lines += [" · ".join(meta), ""]

    lines += ["## Attacks (DESIGN §9)", ""]
    attacks = _records(report.get("attacks"))
    if attacks:
        rows = [
            [
                _md(attack.get("id")),
                _md(attack.get("name")),
                _md(attack.get("stride")),
                _md_outcome(_outcome(attack.get("baseline"))),
                _md_outcome(_outcome(attack.get("ajwt"))),
                _md(attack.get("check")),
            ]
            for attack in attacks
        ]
        head = ["ID", "Attack", "STRIDE", "Baseline", "A-JWT", "Blocked by"]
        lines += [*_md_table(head, rows), ""]
        details = [
            f"- **{_md(a.get('id'))}**: {_md(_outcome(a.get('ajwt')).detail)}"
            for a in attacks
            if _outcome(a.get("ajwt")).detail
        ]
        if details:
            lines += ["A-JWT refusals in detail:", "", *details, ""]
    else:
        lines += ["No attacks were recorded.", ""]

    lines += ["## Overhead", ""]
    metrics = _overhead(report)
    lines += [f"- {_md(m.label)}: {_md(m.value)}" for m in metrics] or ["No overhead was measured."]
    lines.append("")

    drawing = _workflow(report.get("workflow"))
    if drawing is not None:
        lines += ["## Workflow", "", "```mermaid", mermaid(drawing), "```", ""]

    tree = _mapping(report.get("delegation_tree"))
    lines += ["## Delegation tree (A-JWT run)", ""]
    user_name = _text(tree.get("user")) or "user"
    if tree.get("run_id"):
        lines += [f"Run {_md_code(tree.get('run_id'))} for {_md(user_name)}.", ""]
    delegations = _records(tree.get("delegations"))
    delegated = {_text(d.get("to")) for d in delegations if d.get("to") != d.get("from")}
    roots = [
        _text(a.get("id"))
        for a in _records(tree.get("agents"))
        if a.get("id") and _text(a.get("id")) not in delegated
    ]
    edges = [f"- {_md(user_name)} → {_md(root)} (acts for the user directly)" for root in roots]
    for d in delegations:
        edge = (
            f"- {_md(d.get('from'))} → {_md(d.get('to'))}: "
            f"{_md(d.get('from_step'))} → {_md(d.get('to_step'))}"
        )
        if d.get("scope"):
            edge += f", scope {_md_code(d.get('scope'))}"
        if d.get("assertion"):
            edge += f", assertion {_md_code(_short_hash(d.get('assertion')))}"
        edges.append(edge)
    lines += edges or ["No agents or delegations were recorded."]
    lines.append("")

    legitimate = _mapping(report.get("legitimate"))
    lines += ["## Legitimate calls", ""]
    lines += _md_calls(_records(legitimate.get("baseline")), "Baseline (plain OAuth)")
    lines += _md_calls(_records(legitimate.get("ajwt")), "A-JWT")

    ledger = _ledger(report)
    lines += ["## Run ledger (DESIGN §8)", ""]
    verdict_line = f"**{ledger.verdict}**: {len(ledger.entries)} entries"
    if ledger.head:
        verdict_line += f"; head {_md_code(ledger.head)}"
    lines += [verdict_line, ""]
    if ledger.entries:
        rows = [
            [
                _md(entry.get("seq")),
                _md_code(entry.get("kind")),
                _md(_timestamp(entry.get("at"))),
                _md_code(_short_hash(entry.get("entry_hash"))),
                _md(_ledger_data(_text(entry.get("kind")), _mapping(entry.get("data")))),
            ]
            for entry in ledger.entries
        ]
        lines += [*_md_table(["Seq", "Kind", "At (UTC)", "Entry hash", "Data"], rows), ""]
    return "\n".join(lines)
