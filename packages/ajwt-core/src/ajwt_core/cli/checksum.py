"""``ajwt checksum``: an agent manifest's identity (DESIGN §3)."""

from __future__ import annotations

from typing import Annotated

import typer

from ajwt_core.cli._output import parse_json, read_text


def checksum(
    manifest: Annotated[
        str,
        typer.Argument(
            metavar="MANIFEST.json", help="The agent manifest (JSON), or - for standard input."
        ),
    ],
    canonical: Annotated[
        bool,
        typer.Option(
            "--canonical", help="Also print the canonical JSON (RFC 8785) that is hashed."
        ),
    ] = False,
) -> None:
    """Print an agent manifest's checksum (DESIGN §3).

    The checksum is "sha256:" followed by the SHA-256 of the manifest's canonical JSON
    (RFC 8785). The IdP computes the same value when the agent registers, and the shim
    recomputes it before every mint. Whitespace-only edits of the prompt, the order of
    tools and the order of keys do not change it; any other edit does.
    """
    from ajwt_core.canonical import jcs
    from ajwt_core.checksum import AgentManifest, compute_checksum
    from ajwt_core.errors import Reason

    document = parse_json(read_text(manifest, "manifest"), "manifest", Reason.INVALID_MANIFEST)
    # Both raise only InvalidRequest, which the app prints as one line.
    typer.echo(compute_checksum(document))
    if canonical:
        typer.echo(jcs(AgentManifest.model_validate(document).canonical()).decode("utf-8"))
