"""The demo report renderer: report.json, report.md and one self-contained report.html."""

from __future__ import annotations

import copy
import doctest
import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import ajwt_demo.report
from ajwt_core.ledger import EntryKind, Ledger
from ajwt_demo.report import delegation_tree_svg, render_html, render_markdown, write_reports

SVG = "{http://www.w3.org/2000/svg}"
SCRIPT = "<script>alert(1)</script>"
RUN_ID = "run-7f3a9c2e"

# Two hex digests, as the demo's checksums and assertion hashes look.
DIGEST_A = "sha256:" + "a1" * 32
DIGEST_B = "sha256:" + "b2" * 32

# id, name, STRIDE class, check, A-JWT status, error, reason, baseline blocked
ATTACKS = [
    ("T1", "Agent identity spoofing", "Spoofing",
     "registration + checksum at mint; PoP key bound to registration",
     400, "invalid_grant", "pop_key_mismatch", False),
    ("T2", "Token replay / theft", "Spoofing",
     "DPoP proof (cnf.jkt, htm, htu, ath, bh); (jkt, jti) replay cache",
     401, "invalid_dpop_proof", "replayed", False),
    ("T3", "Shim impersonation", "Spoofing", "client auth + shim checksum",
     401, "invalid_client", "client_authentication_failed", True),
    ("T4", "Runtime code modification", "Tampering", "checksum recomputed before every mint",
     400, "invalid_grant", "checksum_mismatch", False),
    ("T5", "Prompt template injection", "Tampering", "template checksum + variable whitelist",
     400, "invalid_request", "undeclared_variable", False),
    ("T6", "Workflow-definition tampering", "Tampering",
     "admin-only registration; versioned + hashed workflow", 403, "access_denied",
     "workflow_hash_mismatch", True),
    ("T7", "Cross-agent privilege escalation", "Elevation of privilege",
     "step's agent must be the caller; per-agent keys", 400, "invalid_grant",
     "agent_not_assigned_to_step", False),
    ("T8", "Workflow-step bypass", "Elevation of privilege",
     "DAG dependencies checked against the ledger", 400, "invalid_grant",
     "step_dependencies_unmet", False),
    ("T9", "Scope inflation", "Elevation of privilege", "scope ⊆ step ∩ grant ∩ delegator",
     400, "invalid_scope", "scope_not_allowed", True),
    ("T10", "Intent-origin forgery", "Repudiation", "run rooted in the user's token",
     400, "invalid_grant", "wrong_initiator", False),
    ("T11", "Delegation-chain manipulation", "Tampering",
     "delegator-signed assertion along a DAG edge", 400, "invalid_grant",
     "delegation_not_in_workflow", False),
    ("T12", "Agent-configuration exposure", "Information disclosure",
     "only the checksum leaves the process", 400, "invalid_request", "secret_in_manifest",
     False),
]  # fmt: skip

AGENTS = ["supervisor", "planner", "classifier", "patcher"]

# The DESIGN §11 workflow with a supervisor handing each step on to the next agent.
DELEGATIONS = [
    ("supervisor", "planner", "triage", "plan", "repo:read"),
    ("planner", "classifier", "plan", "classify", "advisories:read"),
    ("classifier", "patcher", "classify", "patch", "repo:write"),
]

CALLS = [
    ("GET", "/repos", "supervisor", "triage", "list_repos", ["supervisor"]),
    ("GET", "/repos/acme%2Fstorefront/files/package.json", "planner", "plan", "read_file",
     ["supervisor", "planner"]),
    ("GET", "/repos/acme%2Fbilling/files/requirements.txt", "planner", "plan", "read_file",
     ["supervisor", "planner"]),
    ("GET", "/advisories?package=lodash", "classifier", "classify", "query_advisories",
     ["supervisor", "planner", "classifier"]),
    ("GET", "/advisories?package=requests", "classifier", "classify", "query_advisories",
     ["supervisor", "planner", "classifier"]),
    ("POST", "/repos/acme%2Fstorefront/pulls", "patcher", "patch", "create_pull_request",
     ["supervisor", "planner", "classifier", "patcher"]),
]  # fmt: skip


def _call(
    method: str, path: str, agent: str, step: str, tool: str, chain: list[str]
) -> dict[str, Any]:
    return {
        "method": method,
        "path": path,
        "status": 201 if method == "POST" else 200,
        "agent": agent,
        "step": step,
        "tool": tool,
        "chain": chain,
        "user": "user:alice",
    }


def _ledger() -> dict[str, Any]:
    """A real hash-chained ledger of the run, built with ``ajwt_core.ledger``."""
    ledger = Ledger(RUN_ID)
    at = 1_764_417_600
    ledger.append(
        EntryKind.RUN_STARTED,
        {"initiated_by": "user:alice", "workflow_id": "vuln-patch", "workflow_version": 1},
        at=at,
    )
    for number, (method, path, agent, step, tool, chain) in enumerate(CALLS, start=1):
        del method, path
        ledger.append(
            EntryKind.TOKEN_MINTED,
            {"jti": f"jti-{number}", "agent": agent, "step": step, "tool": tool,
             "chain": chain, "scope": "repo:read"},
            at=at + number,
        )  # fmt: skip
    for number, (source, target, from_step, to_step, scope) in enumerate(DELEGATIONS):
        ledger.append(
            EntryKind.DELEGATION,
            {"from": source, "to": target, "from_step": from_step, "to_step": to_step,
             "scope": scope, "assertion": DIGEST_B},
            at=at + 10 + number,
        )  # fmt: skip
    ledger.append(
        EntryKind.MINT_REFUSED,
        {"agent": "patcher", "step": "triage", "tool": "list_repos",
         "error": "invalid_grant", "reason": "agent_not_assigned_to_step"},
        at=at + 20,
    )  # fmt: skip
    ledger.append(EntryKind.STEP_COMPLETED, {"step": "patch", "agent": "patcher"}, at=at + 21)
    entries = [entry.model_dump(mode="json") for entry in ledger.entries]
    return {"run_id": RUN_ID, "ok": True, "head": ledger.head, "entries": entries}


def sample_report() -> dict[str, Any]:
    """A report as ``ajwt demo`` builds it: 12 attacks, 6 calls per run, 3 delegations."""
    ajwt_calls = [_call(*call) for call in CALLS]
    baseline_calls = [
        {**_call(*call), "agent": None, "step": None, "tool": None, "chain": [], "user": None}
        for call in CALLS
    ]
    attacks: list[dict[str, Any]] = [
        {
            "id": ident,
            "name": name,
            "stride": stride,
            "description": f"{name}, tried against both runs.",
            "check": check,
            "baseline": {
                "blocked": baseline_blocked,
                "status": 401 if baseline_blocked else 200,
                "error": "invalid_token" if baseline_blocked else None,
                "reason": None,
                "detail": "bearer token rejected" if baseline_blocked else "request served",
            },
            "ajwt": {
                "blocked": True,
                "status": status,
                "error": error,
                "reason": reason,
                "detail": f"refused by the {reason} check",
            },
        }
        for ident, name, stride, check, status, error, reason, baseline_blocked in ATTACKS
    ]
    baseline_blocked = sum(1 for *_, blocked in ATTACKS if blocked)
    return {
        "version": 1,
        "generated_at": "2026-11-29T12:00:00Z",
        "framework": "langgraph",
        "summary": {
            "attacks": len(attacks),
            "ajwt_blocked": len(attacks),
            "baseline_blocked": baseline_blocked,
            "legit_calls": len(CALLS),
            "legit_accepted": len(CALLS),
            "baseline_legit_calls": len(CALLS),
            "baseline_legit_accepted": len(CALLS),
            "ok": True,
            "line": (
                f"A-JWT blocked {len(attacks)}/{len(attacks)} attacks; baseline blocked "
                f"{baseline_blocked}/{len(attacks)}; legitimate calls accepted "
                f"{len(CALLS)}/{len(CALLS)}"
            ),
        },
        "overhead": {
            "mint_ms_p50": 2.1,
            "mint_ms_p99": 4.0,
            "proof_us_p50": 60.0,
            "verify_us_p50": 400.0,
            "bearer_verify_us_p50": 300.0,
            "calls": len(CALLS),
        },
        "legitimate": {"baseline": baseline_calls, "ajwt": ajwt_calls},
        "attacks": attacks,
        "delegation_tree": {
            "user": "user:alice",
            "run_id": RUN_ID,
            "agents": [
                {"id": agent, "checksum": DIGEST_A, "registration_id": f"reg-{agent}"}
                for agent in AGENTS
            ],
            "delegations": [
                {
                    "from": source,
                    "to": target,
                    "from_step": from_step,
                    "to_step": to_step,
                    "assertion": DIGEST_B,
                    "scope": scope,
                }
                for source, target, from_step, to_step, scope in DELEGATIONS
            ],
            "calls": ajwt_calls,
        },
        "ledger": _ledger(),
    }


class _TagBalance(HTMLParser):
    """Checks that every opened element is closed, in order (void elements excepted)."""

    VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
         "source", "track", "wbr"}
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)  # <path .../> in the inline SVG: opened and closed at once

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            self.errors.append(f"end tag for void element <{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


def _parse_html(page: str) -> _TagBalance:
    parser = _TagBalance()
    parser.feed(page)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    return parser


def _svg_in(page: str) -> str:
    match = re.search(r"<svg\b.*?</svg>", page, re.DOTALL)
    assert match is not None
    return match.group(0)


def _xml(svg: str) -> ET.Element:
    """Parse the renderer's own SVG (no DTD, no entities: nothing for defusedxml to stop)."""
    return ET.fromstring(svg)  # noqa: S314


def _texts(element: ET.Element) -> list[str]:
    return ["".join(text.itertext()) for text in element.iter(f"{SVG}text")]


def _agent_nodes(svg: ET.Element) -> dict[str, ET.Element]:
    return {
        group.attrib["data-agent"]: group
        for group in svg.iter(f"{SVG}g")
        if group.attrib.get("class") == "agent"
    }


# --------------------------------------------------------------------------- files


def test_writes_the_three_files_and_the_json_round_trips(tmp_path: Path) -> None:
    report = sample_report()
    paths = write_reports(report, tmp_path / "out" / "demo")

    assert set(paths) == {"json", "md", "html"}
    assert [path.name for path in paths.values()] == ["report.json", "report.md", "report.html"]
    assert all(
        path.parent == tmp_path / "out" / "demo" and path.is_file() for path in paths.values()
    )
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == report
    assert paths["json"].read_text(encoding="utf-8") == (
        json.dumps(report, indent=2, sort_keys=True) + "\n"
    )
    assert paths["html"].read_text(encoding="utf-8") == render_html(report)
    assert paths["md"].read_text(encoding="utf-8") == render_markdown(report)


def test_writing_twice_overwrites(tmp_path: Path) -> None:
    write_reports(sample_report(), tmp_path)
    paths = write_reports({"summary": {"line": "second run", "ok": False}}, tmp_path)

    assert "second run" in paths["html"].read_text(encoding="utf-8")
    assert "A-JWT blocked 12/12" not in paths["md"].read_text(encoding="utf-8")


def test_module_doctests_pass() -> None:
    result = doctest.testmod(ajwt_demo.report, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- HTML


def test_html_is_well_formed_and_self_contained() -> None:
    page = render_html(sample_report())

    parser = _parse_html(page)
    assert page.startswith("<!DOCTYPE html>")
    assert {"html", "head", "title", "style", "body", "table", "svg"} <= parser.tags
    assert "script" not in parser.tags
    assert "link" not in parser.tags and "img" not in parser.tags
    # Nothing is fetched: no remote URL other than the SVG namespace name.
    assert re.findall(r"https?://[^\"' )]+", page) == ["http://www.w3.org/2000/svg"]
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_html_shows_the_summary_line_as_a_pass() -> None:
    report = sample_report()
    page = render_html(report)

    match = re.search(r'<p class="summary (\w+)"[^>]*>(.*?)</p>', page)
    assert match is not None
    assert match.group(1) == "pass"
    assert "PASS" in match.group(2)
    assert html.escape(report["summary"]["line"]) in match.group(2)
    assert page.index('class="summary') < page.index("<table")


def test_html_marks_a_failed_run_in_text_and_colour() -> None:
    report = sample_report()
    report["summary"]["ok"] = False
    report["attacks"][3]["ajwt"] = {"blocked": False, "status": 200, "reason": None}

    page = render_html(report)

    assert re.search(r'<p class="summary fail"[^>]*>✘ FAIL: ', page)
    row = re.search(r"<tr class=\"gap\"><th scope='row'>T4</th>.*?</tr>", page)
    assert row is not None
    assert row.group(0).count("ALLOWED") == 2  # baseline and A-JWT both let it through


def test_html_attack_table_names_each_attack_outcome_reason_and_check() -> None:
    report = sample_report()
    page = render_html(report)

    table = re.search(r"<table class='attacks'>.*?</table>", page, re.DOTALL)
    assert table is not None
    rows = re.findall(r"<tr class=\"(?:ok|gap)\">.*?</tr>", table.group(0))
    assert len(rows) == len(report["attacks"])
    for row, attack in zip(rows, report["attacks"], strict=True):
        assert f"<th scope='row'>{attack['id']}</th>" in row
        assert html.escape(attack["name"]) in row
        assert html.escape(attack["stride"]) in row
        assert html.escape(attack["check"]) in row
        assert f"<code>{attack['ajwt']['reason']}</code>" in row
        assert "✔ BLOCKED" in row  # A-JWT, in words, not only in colour
        expected = "✔ BLOCKED" if attack["baseline"]["blocked"] else "✘ ALLOWED"
        assert row.count(expected) == (2 if attack["baseline"]["blocked"] else 1)


def test_html_shows_the_overhead_numbers_present() -> None:
    page = render_html(sample_report())

    section = re.search(r"<section id='overhead'>.*?</section>", page, re.DOTALL)
    assert section is not None
    for label, value in [
        ("Intent-token mint (IdP round trip) (p50)", "2.1 ms"),
        ("Intent-token mint (IdP round trip) (p99)", "4 ms"),
        ("DPoP proof signing (p50)", "60 µs"),
        ("Resource-server verification, A-JWT (p50)", "400 µs"),
        ("Resource-server verification, plain bearer (p50)", "300 µs"),
        ("A-JWT verification over plain bearer (p50)", "+100 µs"),
        ("Calls measured", "6"),
    ]:
        assert f"<th scope='row'>{label}</th><td class='num'>{value}</td>" in section.group(0)


def test_html_renders_only_the_overhead_keys_given() -> None:
    report = sample_report()
    report["overhead"] = {"mint_ms_p50": 2.1}

    section = re.search(r"<section id='overhead'>.*?</section>", render_html(report), re.DOTALL)

    assert section is not None
    assert section.group(0).count("<tr>") == 1
    assert "2.1 ms" in section.group(0)


def test_html_lists_the_legitimate_calls_of_both_runs() -> None:
    report = sample_report()
    page = render_html(report)

    section = re.search(r"<section id='legitimate'>.*?</section>", page, re.DOTALL)
    assert section is not None
    tables = re.findall(r"<table class='calls'>.*?</table>", section.group(0))
    assert len(tables) == 2
    baseline, secured = tables
    assert section.group(0).count("6/6 accepted") == 2
    for call in report["legitimate"]["ajwt"]:
        assert f"<code>{html.escape(call['path'])}</code>" in baseline
        assert f"<code>{html.escape(call['path'])}</code>" in secured
        assert f"<code>{call['tool']}</code>" in secured
    assert "supervisor → planner → classifier → patcher" in secured


def test_html_shows_the_verified_ledger_with_its_head() -> None:
    report = sample_report()
    page = render_html(report)

    section = re.search(r"<section id='ledger'>.*?</section>", page, re.DOTALL)
    assert section is not None
    text = section.group(0)
    entries = report["ledger"]["entries"]
    assert "✔ hash chain verified" in text
    assert f"{len(entries)} entries" in text
    assert f"<code>{report['ledger']['head']}</code>" in text
    assert text.count("<tr>") == len(entries) + 1
    for entry in entries:
        short = entry["entry_hash"][: len("sha256:") + 12] + "…"
        assert f"title='{entry['entry_hash']}'>{short}</code>" in text
    assert "supervisor → planner (triage → plan) · repo:read" in text  # a delegation entry
    assert "patcher · triage · list_repos: agent_not_assigned_to_step" in text  # a refusal
    assert "2025-11-29 12:00:00Z" in text  # the run_started timestamp, in UTC


def test_html_says_when_the_ledger_did_not_verify() -> None:
    report = sample_report()
    report["ledger"]["ok"] = False

    page = render_html(report)

    assert "<p class='verdict fail'><strong>✘ hash chain did NOT verify</strong>" in page


# --------------------------------------------------------------------------- SVG


def test_svg_parses_as_xml_and_is_embedded_in_the_html() -> None:
    report = sample_report()
    svg = delegation_tree_svg(report["delegation_tree"])

    root = _xml(svg)
    assert root.tag == f"{SVG}svg"
    assert svg in render_html(report)
    _xml(_svg_in(render_html(report)))


def test_svg_has_a_node_per_agent_and_the_user_at_the_root() -> None:
    report = sample_report()
    root = _xml(delegation_tree_svg(report["delegation_tree"]))

    nodes = _agent_nodes(root)
    assert list(nodes) == AGENTS
    users = [g for g in root.iter(f"{SVG}g") if g.attrib.get("class") == "user"]
    assert len(users) == 1
    assert _texts(users[0])[:2] == ["user:alice", f"run {RUN_ID}"]
    for agent, node in nodes.items():
        assert _texts(node)[0] == agent
        assert _texts(node)[1] == "sha256:a1a1a1a1a1a1…"  # the checksum, shortened


def test_svg_draws_an_edge_per_delegation_labelled_with_its_steps() -> None:
    root = _xml(delegation_tree_svg(sample_report()["delegation_tree"]))

    edges = [p for p in root.iter(f"{SVG}path") if p.attrib.get("class") == "delegation"]
    assert len(edges) == len(DELEGATIONS)
    for edge, (source, target, *_) in zip(edges, DELEGATIONS, strict=True):
        assert edge.attrib["marker-end"] == "url(#ajwt-arrow)"
        title = edge.find(f"{SVG}title")
        assert title is not None and title.text is not None
        assert title.text.startswith(f"{source} → {target}: ")
    labels = [t for t in root.iter(f"{SVG}text") if t.attrib.get("class") == "label"]
    assert ["".join(label.itertext()) for label in labels] == [
        f"{from_step} → {to_step} · {scope}" for _, _, from_step, to_step, scope in DELEGATIONS
    ]


def test_svg_lists_each_call_under_its_agent() -> None:
    root = _xml(delegation_tree_svg(sample_report()["delegation_tree"]))

    nodes = _agent_nodes(root)
    assert _texts(nodes["supervisor"])[2:] == ["GET /repos (list_repos)"]
    assert _texts(nodes["planner"])[2:] == [
        "GET /repos/acme%2Fstorefront/files/package.json (read_file)",
        "GET /repos/acme%2Fbilling/files/requirements.txt (read_file)",
    ]
    assert _texts(nodes["patcher"])[2:] == [
        "POST /repos/acme%2Fstorefront/pulls (create_pull_request)"
    ]


def test_svg_hangs_agents_without_a_delegator_off_the_user() -> None:
    tree = sample_report()["delegation_tree"]
    root = _xml(delegation_tree_svg(tree))
    roots = [p for p in root.iter(f"{SVG}path") if p.attrib.get("class") == "root"]
    assert len(roots) == 1  # only the supervisor acts for the user directly

    tree["delegations"] = []
    root = _xml(delegation_tree_svg(tree))
    roots = [p for p in root.iter(f"{SVG}path") if p.attrib.get("class") == "root"]
    assert [r.findtext(f"{SVG}title") for r in roots] == [f"user:alice → {a}" for a in AGENTS]


def _boxes(root: ET.Element) -> list[tuple[float, float, float, float]]:
    return [
        (float(r.attrib["x"]), float(r.attrib["y"]), float(r.attrib["width"]),
         float(r.attrib["height"]))
        for group in root.iter(f"{SVG}g")
        for r in group.iter(f"{SVG}rect")
    ]  # fmt: skip


@pytest.mark.parametrize(
    "delegations",
    [
        pytest.param(DELEGATIONS, id="chain"),
        pytest.param(
            [("supervisor", agent, "triage", step, "repo:read")
             for agent, step in [("planner", "plan"), ("classifier", "classify"),
                                 ("patcher", "patch")]],
            id="supervisor-hands-out-every-step",
        ),
    ],
)  # fmt: skip
def test_svg_layout_puts_delegates_below_delegators_without_overlap(
    delegations: list[tuple[str, str, str, str, str]],
) -> None:
    tree = sample_report()["delegation_tree"]
    tree["delegations"] = [
        {"from": a, "to": b, "from_step": fs, "to_step": ts, "scope": s}
        for a, b, fs, ts, s in delegations
    ]
    root = _xml(delegation_tree_svg(tree))

    width, height = float(root.attrib["width"]), float(root.attrib["height"])
    assert root.attrib["viewBox"] == f"0 0 {root.attrib['width']} {root.attrib['height']}"
    boxes = _boxes(root)
    assert len(boxes) == 1 + len(AGENTS)
    for x, y, w, h in boxes:
        assert x >= 0 and x + w <= width and y >= 0 and y + h <= height
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
    top = {
        agent: float(node.find(f"{SVG}rect").attrib["y"])  # type: ignore[union-attr]
        for agent, node in _agent_nodes(root).items()
    }
    for source, target, *_ in delegations:
        assert top[source] < top[target]


def test_svg_routes_an_edge_that_skips_a_layer_round_the_nodes_between() -> None:
    tree = sample_report()["delegation_tree"]
    tree["delegations"] = [
        {"from": "supervisor", "to": "planner", "from_step": "triage", "to_step": "plan"},
        {"from": "supervisor", "to": "patcher", "from_step": "triage", "to_step": "patch"},
        {"from": "planner", "to": "classifier", "from_step": "plan", "to_step": "classify"},
        {"from": "supervisor", "to": "classifier", "from_step": "triage", "to_step": "classify"},
    ]
    root = _xml(delegation_tree_svg(tree))

    nodes = _agent_nodes(root)
    rects = {agent: node.find(f"{SVG}rect") for agent, node in nodes.items()}
    box = {
        agent: (float(r.attrib["x"]), float(r.attrib["x"]) + float(r.attrib["width"]))
        for agent, r in rects.items()
        if r is not None
    }
    skip = next(
        p for p in root.iter(f"{SVG}path")
        if (p.findtext(f"{SVG}title") or "").startswith("supervisor → classifier")
    )  # fmt: skip
    # The first straight run of the path is its lane past planner and patcher.
    lane = float(re.findall(r"L([\d.]+),", skip.attrib["d"])[0])
    for agent in ("planner", "patcher"):
        left, right = box[agent]
        assert not left <= lane <= right
    # The two labels over the classifier are stacked, not drawn over each other.
    backgrounds = sorted(
        (float(r.attrib["y"]), float(r.attrib["height"]))
        for r in root.iter(f"{SVG}rect")
        if r.get("class") == "label"
    )
    above_classifier = [
        (y, h) for y, h in backgrounds
        if float(rects["classifier"].attrib["y"]) - 60 < y  # type: ignore[union-attr]
    ]  # fmt: skip
    assert len(above_classifier) == 2
    (y1, h1), (y2, _) = above_classifier
    assert y1 + h1 <= y2


def test_svg_draws_every_agent_of_a_delegation_cycle() -> None:
    tree = {
        "user": "user:alice",
        "delegations": [
            {"from": "a", "to": "b", "from_step": "one", "to_step": "two"},
            {"from": "b", "to": "a", "from_step": "two", "to_step": "one"},
            {"from": "c", "to": "c", "from_step": "three", "to_step": "three"},
        ],
    }

    root = _xml(delegation_tree_svg(tree))

    assert sorted(_agent_nodes(root)) == ["a", "b", "c"]
    labels = ["".join(t.itertext()) for t in root.iter(f"{SVG}text") if t.get("class") == "label"]
    assert sorted(labels) == ["one → two", "three → three", "two → one"]


def test_svg_of_an_empty_tree_is_just_the_user() -> None:
    trees: list[dict[str, Any] | None] = [None, {}, {"agents": [], "delegations": [], "calls": []}]
    for tree in trees:
        root = _xml(delegation_tree_svg(tree))
        assert _agent_nodes(root) == {}
        assert "no agents recorded" in _texts(root)


# --------------------------------------------------------------------------- escaping


def _hostile_report() -> dict[str, Any]:
    report = sample_report()
    report["attacks"][0]["ajwt"]["detail"] = f"token from {SCRIPT}"
    report["attacks"][1]["name"] = f"{SCRIPT} | <b>bold</b>"
    report["attacks"][1]["baseline"]["reason"] = "\x00\x1b[31m"  # control characters
    hostile_call = {**report["legitimate"]["ajwt"][0], "path": f"/repos/{SCRIPT}"}
    report["legitimate"]["ajwt"].append(hostile_call)
    report["legitimate"]["baseline"].append(hostile_call)
    tree = report["delegation_tree"]
    tree["calls"].append({**hostile_call, "agent": f'"><{SCRIPT}'})
    tree["agents"].append({"id": f'evil"{SCRIPT}', "checksum": "&amp;"})
    tree["delegations"].append(
        {"from": "supervisor", "to": f'evil"{SCRIPT}', "from_step": SCRIPT, "to_step": "x&y"}
    )
    report["ledger"]["entries"][0]["data"]["initiated_by"] = SCRIPT
    report["ledger"]["head"] = SCRIPT
    return report


def test_user_controlled_text_is_escaped_in_the_html() -> None:
    page = render_html(_hostile_report())

    parser = _parse_html(page)
    assert "script" not in parser.tags and "b" not in parser.tags
    assert "<script" not in page.lower()
    assert "token from &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<code>/repos/&lt;script&gt;alert(1)&lt;/script&gt;</code>" in page
    assert "\x00" not in page and "\x1b" not in page


def test_user_controlled_text_is_escaped_in_the_svg() -> None:
    svg = delegation_tree_svg(_hostile_report()["delegation_tree"])

    root = _xml(svg)
    assert "<script" not in svg.lower()
    nodes = _agent_nodes(root)
    assert f'evil"{SCRIPT}' in nodes
    assert f"GET /repos/{SCRIPT} (list_repos)" in _texts(nodes[f'"><{SCRIPT}'])
    assert _texts(nodes[f'evil"{SCRIPT}'])[1] == "&amp;"  # shown as text, not decoded


def test_user_controlled_text_cannot_inject_markdown() -> None:
    report = _hostile_report()
    text = render_markdown(report)

    # Outside code spans (which are inert), no "<" may start raw HTML.
    prose = re.sub(r"`[^`]*`", "", text)
    assert re.findall(r"(?<!\\)<", prose) == []
    header = next(line for line in text.splitlines() if line.startswith("| ID |"))
    row = next(line for line in text.splitlines() if line.startswith("| T2 |"))
    # An unescaped "|" would add a column to the GitHub table.
    assert len(re.findall(r"(?<!\\)\|", row)) == len(re.findall(r"(?<!\\)\|", header))
    assert "\\<script\\>alert(1)\\</script\\>" in row
    assert "`/repos/<script>alert(1)</script>`" in text  # inside a code span: inert


# --------------------------------------------------------------------------- Markdown


def test_markdown_has_every_section() -> None:
    report = sample_report()
    text = render_markdown(report)
    lines = text.splitlines()

    assert lines[0] == "# A-JWT demo report"
    assert f"**✔ PASS: {report['summary']['line']}**" in lines
    assert "Framework langgraph · generated 2026-11-29T12:00:00Z · report version 1" in lines
    headings = [line for line in lines if line.startswith("#")]
    assert headings == [
        "# A-JWT demo report",
        "## Attacks (DESIGN §9)",
        "## Overhead",
        "## Delegation tree (A-JWT run)",
        "## Legitimate calls",
        "### Baseline (plain OAuth) (6/6 accepted)",
        "### A-JWT (6/6 accepted)",
        "## Run ledger (DESIGN §8)",
    ]


def test_markdown_attack_table_is_a_github_table() -> None:
    report = sample_report()
    lines = render_markdown(report).splitlines()

    start = lines.index("| ID | Attack | STRIDE | Baseline | A-JWT | Blocked by |")
    assert lines[start + 1] == "|---|---|---|---|---|---|"
    rows = lines[start + 2 : start + 2 + len(report["attacks"])]
    for row, attack in zip(rows, report["attacks"], strict=True):
        assert row.startswith(f"| {attack['id']} | ")
        assert f"✔ **BLOCKED** {attack['ajwt']['status']}" in row
        assert f"`{attack['ajwt']['reason']}`" in row
    assert "| T1 | Agent identity spoofing | Spoofing | ✘ **ALLOWED** 200 |" in rows[0]
    assert "| T3 | Shim impersonation | Spoofing | ✔ **BLOCKED** 401 `invalid_token` |" in rows[2]


def test_markdown_lists_overhead_delegations_calls_and_ledger() -> None:
    report = sample_report()
    text = render_markdown(report)

    assert "- Intent-token mint (IdP round trip) (p50): 2.1 ms" in text
    assert "- user:alice → supervisor (acts for the user directly)" in text
    assert (
        "- supervisor → planner: triage → plan, scope `repo:read`, assertion `sha256:b2b2b2b2b2b2…`"
    ) in text
    assert "- classifier → patcher: classify → patch, scope `repo:write`" in text
    assert "| 6 | POST | `/repos/acme%2Fstorefront/pulls` | 201 ✔ | patcher |" in text
    entries = len(report["ledger"]["entries"])
    assert (
        f"**✔ hash chain verified**: {entries} entries; head `{report['ledger']['head']}`" in text
    )


# --------------------------------------------------------------------------- robustness


def _without(report: dict[str, Any], *keys: str) -> dict[str, Any]:
    trimmed = copy.deepcopy(report)
    for key in keys:
        trimmed.pop(key, None)
    return trimmed


@pytest.mark.parametrize(
    "report",
    [
        pytest.param({}, id="empty"),
        pytest.param(
            _without(sample_report(), "overhead", "delegation_tree", "ledger", "legitimate"),
            id="no-optional-sections",
        ),
        pytest.param(
            {
                "summary": {},
                "overhead": {},
                "attacks": [],
                "legitimate": {"baseline": [], "ajwt": []},
                "delegation_tree": {"user": "user:alice", "agents": [], "delegations": []},
                "ledger": {"entries": []},
            },
            id="empty-lists",
        ),
        pytest.param(
            {
                "summary": None,
                "attacks": [None, "T1", {"id": "T1"}],
                "legitimate": {"ajwt": None},
                "delegation_tree": {
                    "agents": "x",
                    "delegations": [{"from": "a"}],
                    "calls": [{"agent": None}],
                },
                "ledger": {"entries": [{"seq": 0, "at": 10**30, "data": None}]},
                "overhead": {"verify_us_p50": None, "odd": "n/a"},
            },
            id="odd-values",
        ),
    ],
)
def test_missing_or_odd_sections_render_without_error(
    report: dict[str, Any], tmp_path: Path
) -> None:
    paths = write_reports(report, tmp_path)

    page = paths["html"].read_text(encoding="utf-8")
    _parse_html(page)
    _xml(_svg_in(page))
    assert "# A-JWT demo report" in paths["md"].read_text(encoding="utf-8")


def test_missing_summary_is_worked_out_from_the_results() -> None:
    report = _without(sample_report(), "summary")

    page = render_html(report)

    assert "✔ PASS: A-JWT blocked 12/12 attacks; baseline blocked 3/12; " in page
    assert "legitimate calls accepted 6/6" in page
    report["attacks"][0]["ajwt"]["blocked"] = False
    assert "✘ FAIL: A-JWT blocked 11/12 attacks" in render_markdown(report)


def test_the_workflow_is_drawn_beside_the_delegation_tree() -> None:
    from ajwt_core.workflow import reference_workflow

    report = copy.deepcopy(sample_report()) | {"workflow": reference_workflow().canonical()}
    page = render_html(report)
    drawing = re.search(r'<svg[^>]*class="ajwt-workflow".*?</svg>', page, re.S)
    assert drawing is not None
    ET.fromstring(drawing.group(0))  # noqa: S314 - our own output: well-formed SVG
    assert 'class="ajwt-workflow"' in page and 'class="ajwt-tree"' in page
    markdown = render_markdown(report)
    assert "```mermaid\nflowchart TD" in markdown
    # An old report without a workflow still renders.
    assert "records no workflow" in render_html(sample_report())
