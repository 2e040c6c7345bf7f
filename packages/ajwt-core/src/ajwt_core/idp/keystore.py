"""The IdP's signing-key file: generated on first start, private (0600), rotatable.

Several IdP workers share one file: it is created atomically (the first worker's key
wins, the others read it), and each worker reloads it when it changes, so a rotation
or a retirement reaches every worker without a restart.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ajwt_core.keys import Alg, SigningKeySet

#: Default ``rotate-key --activate-after``: a resource server's JWKS is refreshed at
#: least every 300 s (``JWKSCache(max_age=300)``), plus one intent-token lifetime (300 s)
#: of margin, so every resource server holds the new key before its first token.
DEFAULT_ACTIVATE_AFTER = 300 + 300


def _write_private(path: Path, text: str) -> Path:
    """Write ``text`` to a new 0600 temporary file beside ``path``; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def load_signing_keys(path: Path | None, alg: Alg = "ES256") -> SigningKeySet:
    """Load the key set from ``path``, creating it (mode 0600) on first start.

    ``None`` gives an in-memory key set (tests, the embedded demo).
    """
    if path is None:
        return SigningKeySet.generate(alg)
    if not path.exists():
        tmp = _write_private(path, SigningKeySet.generate(alg).to_json())
        try:
            os.link(tmp, path)  # atomic create-if-absent: concurrent starts agree
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return SigningKeySet.from_json(path.read_text())


def write_private_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600: it never exists with wider
    permissions."""
    os.replace(_write_private(path, text), path)


def save_signing_keys(path: Path, keys: SigningKeySet) -> None:
    """Replace the key file atomically with mode 0600."""
    write_private_text(path, keys.to_json())


def rotate_key_file(path: Path, *, activate_after: int = DEFAULT_ACTIVATE_AFTER) -> str:
    """Add a new key to the file, keeping the old ones published; returns its kid.

    The key is published at once but signs only ``activate_after`` seconds later, so
    every resource server has fetched it before it is first used.
    """
    keys = load_signing_keys(path)
    new = keys.rotate(activate_at=int(time.time()) + activate_after)
    save_signing_keys(path, keys)
    return new.kid


def retire_key_file(path: Path, kid: str, *, replace: bool = False) -> str | None:
    """Remove key ``kid`` from the file (a compromised key): no longer published, and
    tokens it signed no longer verify. Returns the kid of the replacement, if one was
    made.

    The active signing key is retired only with ``replace=True``, which adds a new key
    that signs at once (SigningKeySet.retire refuses otherwise).
    """
    keys = load_signing_keys(path)
    replacement = keys.retire(kid, replace=replace)
    save_signing_keys(path, keys)
    return replacement.kid if replacement is not None else None


class ReloadingKeys:
    """The key set of a file, reloaded when the file changes (checked at most every
    ``interval`` seconds)."""

    def __init__(
        self, path: Path, *, interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = path
        self._interval = interval
        self._clock = clock
        self._keys = load_signing_keys(path)
        self._stamp = self._mtime()
        self._checked = clock()

    def _mtime(self) -> int:
        try:
            return self._path.stat().st_mtime_ns
        except OSError:
            return -1

    def __call__(self) -> SigningKeySet:
        now = self._clock()
        if now - self._checked >= self._interval:
            self._checked = now
            stamp = self._mtime()
            if stamp != self._stamp:
                self._keys = SigningKeySet.from_json(self._path.read_text())
                self._stamp = stamp
        return self._keys
