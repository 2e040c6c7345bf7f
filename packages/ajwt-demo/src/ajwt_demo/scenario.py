"""The demo's workflow, provided by a framework adapter (DESIGN §11 in LangGraph,
AutoGen or CrewAI), behind one small interface so the demo itself stays framework-free.

Each framework's module in :mod:`ajwt_demo.scenarios` exposes ``scenario`` (an object
with the two methods of :class:`Scenario`); :func:`load_scenario` imports it by framework
name.
"""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

import httpx

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.shim import Run, Shim

#: Framework name → module holding ``scenario``.
FRAMEWORKS: dict[str, str] = {
    "langgraph": "ajwt_demo.scenarios.langgraph",
    "autogen": "ajwt_demo.scenarios.autogen",
    "crewai": "ajwt_demo.scenarios.crewai",
}


#: Framework name → the adapter package its scenario runs on.
ADAPTERS: dict[str, str] = {
    "langgraph": "ajwt-langchain",
    "autogen": "ajwt-autogen",
    "crewai": "ajwt-crewai",
}


@runtime_checkable
class Scenario(Protocol):
    """The vulnerability-patcher workflow of DESIGN §11 in one framework, run offline
    with a scripted model that makes real tool calls against the reference API."""

    name: str

    def run_secured(self, shim: Shim, run: Run, rs_url: str) -> str:
        """Run the workflow with A-JWT: register the four agents with ``shim`` (their
        manifests extracted from the live framework objects) unless already registered,
        and run them for ``run`` with the adapter's hooks; tools call ``rs_url`` through
        ``shim.auth()``. Returns the supervisor's final answer."""
        ...

    def run_baseline(self, rs_url: str, auth: httpx.Auth) -> str:
        """Run the same agents and tools with plain OAuth: no shim, no adapter hooks;
        every tool call uses ``auth`` (the application's bearer token)."""
        ...


def load_scenario(framework: str) -> Scenario:
    module_name = FRAMEWORKS.get(framework)
    if module_name is None:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = ADAPTERS[framework]
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"the {framework} scenario needs the {package} package ({exc.name} is missing); "
            f"install it with: pip install 'ajwt-demo[{framework}]'",
        ) from None
    scenario = getattr(module, "scenario", None)
    if not isinstance(scenario, Scenario):
        raise InvalidRequest(Reason.MALFORMED_REQUEST, f"{module_name} provides no demo scenario")
    return scenario
