"""``ajwt workflow``: check, draw and describe workflow documents (DESIGN §6.3), and
register them at an IdP.

``check`` validates a YAML or JSON document and points at the line and key of the first
problem; ``show`` draws the steps in the terminal or as Mermaid (of a file, or of a
registered version with ``--idp``); ``schema`` prints the document's JSON Schema;
``export`` drafts one from an app; ``register`` and ``list`` talk to a running IdP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ajwt_core.cli._admin import (
    DEFAULT_IDP_URL,
    AdminTokenFileOption,
    AfterOption,
    IdpOption,
    JsonOption,
    LimitOption,
    admin_client,
    columns,
    emit,
    page_footer,
)
from ajwt_core.cli._output import (
    IO_ERROR,
    dump_json,
    fail,
    printable,
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
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|ID[:VERSION]",
            help="The workflow document (*.json is JSON, anything else YAML; - for standard "
            "input), or with --idp a registered workflow (the latest version without one).",
        ),
    ],
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
    idp: Annotated[
        str | None,
        typer.Option(
            "--idp",
            metavar="URL",
            help="Show a workflow registered at this IdP (with the administrator token).",
        ),
    ] = None,
    admin_token_file: AdminTokenFileOption = None,
) -> None:
    """Draw the workflow: its steps in run order with agents, tools, joins, choices,
    loops and consultations (text), or as a Mermaid flowchart (--mermaid)."""
    from ajwt_core.workflow import Workflow, render

    if out is not None:
        writable_file(out, "--out")
    if idp is not None:
        workflow_id, _, version = file.partition(":")
        if version and not version.isdigit():
            fail(f"{file!r} is not ID or ID:VERSION", "malformed_request")
        with admin_client(idp, admin_token_file) as admin:
            found = admin.workflow(workflow_id, int(version) if version else None)
        workflow = Workflow.from_mapping(found["workflow"])
        if workflow.workflow_hash != found["hash"]:
            fail("the IdP's workflow does not match its hash", "invalid_workflow")
    else:
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
            help="The app: a compiled LangGraph graph, an AutoGen team, a CrewAI crew "
            "or a (crew, {role: agent id}) pair... ('module:factory()' calls a factory).",
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


@app.command("register")
def register(
    file: FileArgument,
    fmt: FormatOption = None,
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a workflow document at the IdP (checked first, as 'check' does).

    A registered version never changes: the same version with other content is
    refused; register the next version instead.
    """
    workflow = _load(file, fmt).workflow()
    with admin_client(idp, admin_token_file) as admin:
        result = admin.register_workflow(workflow.canonical())
    emit(
        result,
        as_json,
        [f"registered {printable(result['workflow_id'])} v{result['version']} {result['hash']}"],
    )


@app.command("list")
def list_workflows(
    workflow_id: Annotated[
        str | None, typer.Option("--id", help="Only the versions of this workflow.")
    ] = None,
    limit: LimitOption = 100,
    after: AfterOption = None,
    idp: IdpOption = DEFAULT_IDP_URL,
    admin_token_file: AdminTokenFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the workflow versions registered at the IdP, with their hashes."""
    with admin_client(idp, admin_token_file) as admin:
        page = admin.workflows(workflow_id=workflow_id, limit=limit, after=after)
    rows = [["WORKFLOW", "VERSION", "HASH"]] + [
        [w["workflow_id"], str(w["version"]), w["hash"]] for w in page["items"]
    ]
    emit(page, as_json, columns(rows) + page_footer(page))
