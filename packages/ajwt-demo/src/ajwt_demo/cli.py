"""``ajwt demo``: the paper's experiment, attacks side by side, and the report.

Everything runs in this process, offline (see :mod:`ajwt_demo.run`). Exit status 0 only if
A-JWT blocked every attack and accepted every legitimate call.
"""

from __future__ import annotations

import importlib.util
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ajwt_core.cli._output import fail, writable_folder

if TYPE_CHECKING:
    from rich.text import Text


class Framework(StrEnum):
    """The agent frameworks the demo runs on (listed by ``--help`` and in usage errors)."""

    langgraph = "langgraph"
    autogen = "autogen"
    crewai = "crewai"


FRAMEWORKS = tuple(f.value for f in Framework)
# The adapter package that runs the demo's workflow on each framework.
_ADAPTERS = {"langgraph": "ajwt_langchain", "autogen": "ajwt_autogen", "crewai": "ajwt_crewai"}


def demo(
    framework: Annotated[
        Framework, typer.Option(help="The agent framework that runs the workflow.")
    ] = Framework.langgraph,
    out: Annotated[
        Path, typer.Option(help="Folder for report.json, report.md and report.html.")
    ] = Path("ajwt-demo-report"),
    db: Annotated[
        str | None,
        typer.Option(help="IdP database URL [default: SQLite in a temporary folder]."),
    ] = None,
    fast: Annotated[
        bool, typer.Option("--fast", help="Fewer overhead measurements (for tests).")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="No live progress display (for logs and CI).")
    ] = False,
) -> None:
    """Run the multi-agent vulnerability patcher with plain OAuth and with A-JWT, send
    every attack of the threat model to both, and write a report."""
    writable_folder(out, "--out")  # before the 20 s of work, not after
    from rich.console import Console

    from ajwt_demo.run import DemoConfig, run_demo

    _require_framework(framework.value)

    console = Console(stderr=True)
    config = DemoConfig(framework=framework.value, out=out, db_url=db, fast=fast)
    console.print(
        f"[bold]A-JWT demo[/bold]: the vulnerability-patcher workflow on {framework.value}, "
        "plain OAuth vs A-JWT, then every attack against both."
    )
    if plain or not console.is_terminal:
        report = run_demo(
            config, lambda label, done, total: console.print(f"[{done}/{total}] {label}")
        )
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:
            task = bar.add_task("starting", total=1)

            def show(label: str, done: int, total: int) -> None:
                bar.update(task, description=label, completed=done, total=total)

            report = run_demo(config, show)
    _print_results(Console(), report, out)
    raise typer.Exit(0 if report["summary"]["ok"] else 1)


def _require_framework(framework: str) -> None:
    """One line naming the package to install if the framework's adapter is missing."""
    module = _ADAPTERS[framework]
    if importlib.util.find_spec(module) is None:
        package = module.replace("_", "-")
        fail(
            f"ajwt demo --framework {framework} needs the {package} package; "
            "install it with: pip install "
            + (package if framework == "langgraph" else f"'ajwt-demo[{framework}]'"),
            "missing_extra",
        )


def _outcome(side: dict[str, Any]) -> Text:
    """``blocked`` / ``allowed`` over the reason (or status): two short lines, so that a
    narrow column wraps between them and never inside a reason code."""
    from rich.text import Text

    if side["blocked"]:
        why = side.get("reason") or side.get("error") or f"HTTP {side['status']}"
        return Text.assemble(("blocked", "green"), f"\n({why})")
    return Text.assemble(("allowed", "red"), f"\nHTTP {side['status']}")


def _print_results(console: Any, report: dict[str, Any], out: Path) -> None:
    """The attacks and the legitimate calls, in tables that read at 80 columns: few
    columns, each long text wrapped between words (a column is never narrower than its
    longest word, so reason codes and paths are not cut)."""
    from rich.table import Table
    from rich.text import Text

    def widest(side: str) -> int:
        lines = (_outcome(a[side]).plain.splitlines() for a in report["attacks"])
        return max((len(line) for pair in lines for line in pair), default=8)

    table = Table(title="Attacks, as the servers answered them", show_lines=True)
    table.add_column("attack, and the A-JWT check that blocks it", ratio=1, overflow="fold")
    # As wide as their longest reason code: one is never cut, let alone mid-word.
    table.add_column("baseline (bearer)", min_width=widest("baseline"), no_wrap=True)
    table.add_column("A-JWT", min_width=widest("ajwt"), no_wrap=True)
    for attack in report["attacks"]:
        table.add_row(
            Text.assemble(
                (f"{attack['id']} {attack['name']}", "bold"),
                (f" ({attack['stride']})", "dim"),
                f"\n{attack['check']}",
            ),
            _outcome(attack["baseline"]),
            _outcome(attack["ajwt"]),
        )
    console.print(table)
    calls = Table(title="Legitimate A-JWT calls: who made each one")
    # A path is one word: its column is as wide as the longest, within reason.
    calls_made = report["legitimate"]["ajwt"]
    longest = max((len(c["method"]) + 1 + len(c["path"]) for c in calls_made), default=4)
    calls.add_column("call", overflow="fold", min_width=min(longest, console.width - 30))
    calls.add_column("agent in step, with tool; delegation chain", overflow="fold")
    for call in calls_made:
        calls.add_row(
            f"{call['method']} {call['path']}",
            Text.assemble(
                (call["agent"] or "-", "bold"),
                f" in {call['step'] or '-'}, with {call['tool'] or '-'}\n",
                (" → ".join(call["chain"]), "dim"),
            ),
        )
    console.print(calls)
    overhead = report["overhead"]
    console.print(
        "Overhead in this run (p50): "
        f"mint {overhead['mint_ms_p50']} ms over loopback, "
        f"proof signing {overhead['proof_us_p50']} µs, "
        f"verification {overhead['verify_us_p50']} µs "
        f"({overhead['verify_cached_us_p50']} µs with the token cached; "
        f"a plain bearer check {overhead['bearer_verify_us_p50']} µs)"
    )
    ledger = report["ledger"]
    verdict = "verifies" if ledger["ok"] else "DOES NOT verify"
    console.print(f"Run ledger: {len(ledger['entries'])} entries, hash chain {verdict}.")
    style = "bold green" if report["summary"]["ok"] else "bold red"
    console.print(f"[{style}]{report['summary']['line']}[/{style}]")
    console.print(f"Report: {out / 'report.html'} (also report.md, report.json)")
