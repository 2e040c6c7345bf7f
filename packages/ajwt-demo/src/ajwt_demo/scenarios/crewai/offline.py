"""Keep CrewAI offline and out of the user's home folder (run before crewai loads).

``import crewai`` writes under ``$HOME`` as a side effect: an encryption key in
``~/.local/share/crewai/credentials``, a write test in ``~/.config/crewai``, and its
storage folder ``~/.local/share/<CREWAI_STORAGE_DIR or the current folder's name>``
(which it also uses at run time); with telemetry or tracing on it would send data.
:func:`keep_crewai_offline` prevents all of that without taking any decision the user
already made:

- the telemetry and tracing flags are set only where the environment has no value;
- only if ``CREWAI_STORAGE_DIR`` is unset (nobody chose where CrewAI writes), it is set
  to a fresh temporary folder (removed at exit) and, while ``crewai`` is imported,
  ``HOME`` points into that folder too, so that the import-time writes land there; the
  user's ``HOME`` is restored as soon as the import is done.

``crewai`` and this module's callers import nothing else from CrewAI before it runs.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

__all__ = ["OFFLINE_FLAGS", "keep_crewai_offline"]

#: CrewAI's telemetry, tracing and version-check switches, all off.
OFFLINE_FLAGS = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "OTEL_SDK_DISABLED": "true",
}


@contextlib.contextmanager
def _home(path: str) -> Iterator[None]:
    before = os.environ.get("HOME")
    os.environ["HOME"] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = before


def keep_crewai_offline() -> None:
    """Set CrewAI's offline flags (where unset) and, unless ``CREWAI_STORAGE_DIR`` is
    set, its storage in a temporary folder; then import ``crewai``. Idempotent."""
    for name, value in OFFLINE_FLAGS.items():
        os.environ.setdefault(name, value)
    if "crewai" in sys.modules or os.environ.get("CREWAI_STORAGE_DIR"):
        return  # already loaded (too late to move its files), or the caller chose
    folder = tempfile.mkdtemp(prefix="ajwt-crewai-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    # An absolute CREWAI_STORAGE_DIR is the storage folder itself (appdirs joins it).
    os.environ["CREWAI_STORAGE_DIR"] = os.path.join(folder, "storage")
    home = os.path.join(folder, "home")
    os.mkdir(home)
    with _home(home):
        importlib.import_module("crewai")
