"""``python -m ajwt_core``: the ``ajwt`` command (the console script runs :func:`main`).

Lives outside :mod:`ajwt_core.cli` so that it can report a missing ``cli`` extra (Typer,
Rich) as one line instead of a traceback: ``ajwt_core.cli`` itself cannot be imported
without Typer.
"""

from __future__ import annotations

import sys

from ajwt_core._extras import MissingExtraError


def main() -> int:
    """Run the ``ajwt`` command; exit status 1 with one ``error:`` line if the ``cli``
    extra is missing."""
    try:
        from ajwt_core.cli import main as cli_main
    except MissingExtraError as exc:
        print(f"error: {exc} (missing_extra)", file=sys.stderr)
        return 1
    cli_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
