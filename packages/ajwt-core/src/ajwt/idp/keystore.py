"""The IdP's signing-key file: generated on first start, private (0600), rotatable."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ajwt.keys import Alg, SigningKeySet


def load_signing_keys(path: Path | None, alg: Alg = "ES256") -> SigningKeySet:
    """Load the key set from ``path``, creating it (mode 0600) on first start.

    ``None`` gives an in-memory key set (tests, the embedded demo).
    """
    if path is None:
        return SigningKeySet.generate(alg)
    if path.exists():
        return SigningKeySet.from_json(path.read_text())
    keys = SigningKeySet.generate(alg)
    save_signing_keys(path, keys)
    return keys


def save_signing_keys(path: Path, keys: SigningKeySet) -> None:
    """Write atomically with mode 0600: the file never exists with wider permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(keys.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rotate_key_file(path: Path) -> str:
    """Add a new active key to the file, keeping the old ones published; returns its kid."""
    keys = load_signing_keys(path)
    new = keys.rotate()
    save_signing_keys(path, keys)
    return new.kid
