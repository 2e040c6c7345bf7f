"""Shim integrity checksum (DESIGN §5.4): a digest of the installed ``ajwt`` package.

SHA-256 over the sorted list of ``<relative path> <sha256 of content>`` lines of every
``.py`` file of the package. The shim sends it as ``X-Shim-Checksum: sha256=<hex>``;
the IdP publishes the accepted values at ``/.well-known/ajwt-shims``. It is
self-attestation: it raises the bar for a tampered shim, it does not prove anything.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

HEADER = "X-Shim-Checksum"


@cache
def shim_checksum(root: Path | None = None) -> str:
    """Hex digest of the installed package (computed once per process)."""
    base = root or Path(__file__).resolve().parent
    lines = []
    for path in sorted(base.rglob("*.py")):
        relative = path.relative_to(base).as_posix()
        lines.append(f"{relative} {hashlib.sha256(path.read_bytes()).hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def header_value() -> str:
    return f"sha256={shim_checksum()}"
