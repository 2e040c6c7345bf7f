"""``ajwt workflow``: check, draw and describe workflow documents (DESIGN §6.3).

``check`` validates a YAML or JSON document and points at the line and key of the first
problem; ``show`` draws the steps in the terminal or as Mermaid; ``schema`` prints the
document's JSON Schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ajwt_core.cli._output import (
    IO_ERROR,
    dump_json,
    fail,
    read_text,
    usage_error,
    writable_file,
)

app = typer.Typer(
    help="Check, draw and describe workflow documents (YAML or JSON).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

FileArgument = Annotated[
    str,
    typer.Argument(
        metavar="FILE",
        help="The workflow document: *.json is JSON, anything else YAML; - for standard input.",
    ),
]
FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Read FILE as 'json' or 'yaml' [default: from its name; YAML for -].",
        show_default=False,
    ),
]


def _load(source: str, fmt: str | None) -> Any:
    from ajwt_core.workflow.source import format_of, load_document

    if fmt not in (None, "json", "yaml"):
        usage_error(f"{fmt!r} is not one of 'json', 'yaml'", "--format")
    chosen = fmt or format_of(source)
    return load_document(read_text(source, "workflow"), "json" if chosen == "json" else "yaml")


@app.command("check")
def check(
    file: FileArgument,
    fmt: FormatOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Validate a workflow document; print its id, version, hash and steps.

    Exit status 0 when it is valid; 1 with one line naming the line, the key and the
    problem otherwise. The hash is the workflow_hash the IdP computes at registration.
    """
    workflow = _load(file, fmt).workflow()
    if as_json:
        dump_json(
            {
                "ok": True,
                "workflow_id": workflow.id,
                "version": workflow.version,
                "hash": workflow.workflow_hash,
                "steps": workflow.topological_order(),
                "agents": workflow.agents(),
            }
        )
        return
    typer.echo(
        f"ok: workflow {workflow.id} v{workflow.version}, {len(workflow.steps)} steps, "
        f"agents {', '.join(workflow.agents())}"
    )
    typer.echo(workflow.workflow_hash)


@app.command("show")
def show(
    file: FileArgument,
    fmt: FormatOption = None,
    mermaid: Annotated[
        bool, typer.Option("--mermaid", help="Print a Mermaid flowchart instead of text.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write to this file instead of standard output.", dir_okay=False
        ),
    ] = None,
    width: Annotated[int, typer.Option(help="Fold text to this many columns.", min=40)] = 80,
) -> None:
    """Draw the workflow: its steps in run order with agents, tools, joins, choices,
    loops and consultations (text), or as a Mermaid flowchart (--mermaid)."""
    from ajwt_core.workflow import render

    if out is not None:
        writable_file(out, "--out")
    workflow = _load(file, fmt).workflow()
    drawing = render.mermaid(workflow) if mermaid else render.text(workflow, width=width)
    if out is None:
        typer.echo(drawing)
        return
    try:
        out.write_text(drawing + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {str(out)!r}: {exc.strerror or type(exc).__name__}", IO_ERROR)
    typer.echo(f"wrote {out}", err=True)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of workflow documents (draft 2020-12)."""
    from ajwt_core.workflow.model import json_schema

    typer.echo(json.dumps(json_schema(), indent=2, sort_keys=True))


@app.command("export")
def export(
    app_reference: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:OBJECT",
            help="The app: a compiled LangGraph graph, an AutoGen team, a CrewAI crew... "
            "('module:factory()' calls a factory).",
        ),
    ],
    workflow_id: Annotated[str, typer.Option("--id", help="The workflow id.")] = "draft",
    version: Annotated[int, typer.Option(help="The workflow version.", min=1)] = 1,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write to this file instead of standard output.", dir_okay=False
        ),
    ] = None,
) -> None:
    """Draft a workflow from an app's structure (its nodes and edges, team, or crew) and
    write it as YAML, for a person to review before registering it.

    The draft is what the structure shows; decide its scopes, approvals, optional steps
    and choices yourself, then check it (ajwt workflow check) and register it.
    """
    from ajwt_core.adapters import draft_workflow, load_object
    from ajwt_core.workflow.render import yaml_document

    if out is not None:
        writable_file(out, "--out")  # before importing the app, which may take seconds
    workflow = draft_workflow(load_object(app_reference), workflow_id=workflow_id, version=version)
    text = "# Drafted by `ajwt workflow export`: review it before registering it.\n"
    text += yaml_document(workflow)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {str(out)!r}: {exc.strerror or type(exc).__name__}", IO_ERROR)
    typer.echo(f"wrote {out}", err=True)
