"""Fixtures for the CrewAI adapter: one embedded IdP + resource server per session.

CrewAI is kept offline (telemetry and tracing off, its files in a temporary folder
unless ``CREWAI_STORAGE_DIR`` is set) before anything imports it:
``import crewai`` costs seconds and writes under ``$HOME``, so it happens once per
session, by :func:`ajwt_demo.scenarios.crewai.offline.keep_crewai_offline`.
"""

from __future__ import annotations

from ajwt_demo.scenarios.crewai.offline import keep_crewai_offline

keep_crewai_offline()

from collections.abc import Iterator  # noqa: E402 - crewai must load after the flags

import pytest  # noqa: E402

from ajwt_core.shim import Run, Shim  # noqa: E402
from ajwt_demo.stack import Stack, start_stack  # noqa: E402


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("crewai-idp") / "idp.db")
    yield running
    running.close()


@pytest.fixture
def shim(stack: Stack) -> Iterator[Shim]:
    """A shim for a fresh client, minting for the reference API before each tool runs.

    No agent is registered: ``secure_crew`` registers them from the CrewAI objects.
    """
    client = stack.new_client()
    the_shim = Shim(
        stack.idp_url,
        client["client_id"],
        client_secret=client["client_secret"],
        default_audience=stack.rs_url,
    )
    yield the_shim
    the_shim.close()


@pytest.fixture
def run(stack: Stack, shim: Shim) -> Run:
    return stack.start_run(shim)
