"""Keep CrewAI offline and out of the user's home folder (import this before crewai).

``import crewai`` reads and writes under ``$HOME`` (``~/.config/crewai``,
``~/.local/share/crewai``) and would send telemetry and traces. The example runs with
telemetry and tracing off and, unless the caller already chose a storage folder, with
``HOME`` and ``CREWAI_STORAGE_DIR`` in a fresh temporary folder, removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

OFFLINE_FLAGS = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
    "OTEL_SDK_DISABLED": "true",
}


def keep_crewai_offline() -> None:
    """Set CrewAI's telemetry flags and a temporary home, before crewai is imported."""
    for name, value in OFFLINE_FLAGS.items():
        os.environ[name] = value
    if "crewai" in sys.modules or os.environ.get("CREWAI_STORAGE_DIR"):
        return  # too late to move HOME, or the caller chose where CrewAI writes
    home = tempfile.mkdtemp(prefix="ajwt-crewai-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["HOME"] = home
    os.environ["CREWAI_STORAGE_DIR"] = os.path.join(home, "storage")
