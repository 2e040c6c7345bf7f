"""``ajwt demo``: the paper's experiment, attacks side by side, and the report.

Everything runs in this process, offline (see :mod:`ajwt_demo.run`). Exit status 0 only if
A-JWT blocked every attack and accepted every legitimate call.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any

import typer

from ajwt_core.cli._output import fail

FRAMEWORKS = ("langgraph", "autogen", "crewai")
# The adapter package that runs the demo's workflow on each framework.
_ADAPTERS = {"langgraph": "ajwt_langchain", "autogen": "ajwt_autogen", "crewai": "ajwt_crewai"}


def demo(
    framework: Annotated[
        str,
        typer.Option(help=f"The agent framework that runs the workflow: {', '.join(FRAMEWORKS)}."),
    ] = "langgraph",
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
    if framework not in FRAMEWORKS:
        raise typer.BadParameter(f"choose one of {', '.join(FRAMEWORKS)}", param_hint="--framework")
    from rich.console import Console

    from ajwt_demo.run import DemoConfig, run_demo

    _require_framework(framework)

    console = Console(stderr=True)
    config = DemoConfig(framework=framework, out=out, db_url=db, fast=fast)
    console.print(
        f"[bold]A-JWT demo[/bold]: the vulnerability-patcher workflow on {framework}, "
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


def _outcome(side: dict[str, Any]) -> str:
    if side["blocked"]:
        why = side.get("reason") or side.get("error") or f"HTTP {side['status']}"
        return f"[green]blocked[/green] ({why})"
    return f"[red]allowed[/red] (HTTP {side['status']})"


def _print_results(console: Any, report: dict[str, Any], out: Path) -> None:
    from rich.table import Table

    table = Table(title="Attacks, as the servers answered them", show_lines=False)
    for column in ("attack", "STRIDE", "baseline (bearer)", "A-JWT", "blocked by"):
        table.add_column(column, overflow="fold")
    for attack in report["attacks"]:
        table.add_row(
            f"{attack['id']} {attack['name']}",
            attack["stride"],
            _outcome(attack["baseline"]),
            _outcome(attack["ajwt"]),
            attack["check"],
        )
    console.print(table)
    calls = Table(title="Legitimate A-JWT calls: who made each one")
    for column in ("call", "agent", "step", "tool", "delegation chain"):
        calls.add_column(column)
    for call in report["legitimate"]["ajwt"]:
        calls.add_row(
            f"{call['method']} {call['path']}",
            call["agent"] or "-",
            call["step"] or "-",
            call["tool"] or "-",
            " → ".join(call["chain"]),
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
