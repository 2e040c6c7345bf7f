"""What the core asks of a framework adapter about an app it did not build: which agents
it has (their manifests) and what workflow its structure suggests.

Each adapter package registers one object under the entry-point group
``ajwt_core.adapters`` (``[project.entry-points."ajwt_core.adapters"]`` in its
``pyproject.toml``); the CLI (``ajwt workflow export``, ``ajwt agents manifest``) finds
the adapter that recognises an app and asks it. The core imports no framework.

>>> class Toy:
...     name = "toy"
...     def recognises(self, app): return isinstance(app, dict)
...     def manifests(self, app): return []
...     def draft_workflow(self, app, *, workflow_id, version):
...         return {"id": workflow_id, "version": version,
...                 "steps": {"a": {"agent": "x", "tools": sorted(app)}}}
>>> draft_workflow({"t": 1}, workflow_id="w", adapters=[Toy()]).steps["a"].tools
['t']
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from ajwt_core.checksum import AgentManifest
from ajwt_core.errors import AJWTError, InvalidRequest, Reason
from ajwt_core.workflow import Workflow

ENTRY_POINT_GROUP = "ajwt_core.adapters"


@runtime_checkable
class FrameworkAdapter(Protocol):
    """One framework's answers about an app built with it."""

    name: str

    def recognises(self, app: object) -> bool:
        """Whether ``app`` is something this adapter understands (a compiled graph, a
        team, a crew...)."""
        ...

    def manifests(self, app: object) -> Sequence[AgentManifest]:
        """The manifests of the agents the app will run, from its live objects."""
        ...

    def draft_workflow(self, app: object, *, workflow_id: str, version: int) -> dict[str, Any]:
        """A workflow document suggested by the app's structure, for a person to review
        before registering it (DESIGN §6.3)."""
        ...


def installed_adapters() -> list[FrameworkAdapter]:
    """The adapters registered by the installed packages, by name."""
    found: list[FrameworkAdapter] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        adapter = entry.load()
        found.append(adapter() if isinstance(adapter, type) else adapter)
    return sorted(found, key=lambda a: a.name)


def adapter_for(
    app: object, adapters: Iterable[FrameworkAdapter] | None = None
) -> FrameworkAdapter:
    """The adapter that recognises ``app``; a clear error naming the installed ones if
    none does."""
    known = list(installed_adapters() if adapters is None else adapters)
    for adapter in known:
        if adapter.recognises(app):
            return adapter
    names = (
        ", ".join(a.name for a in known)
        or "none (install ajwt-langchain, ajwt-autogen or ajwt-crewai)"
    )
    raise InvalidRequest(
        Reason.MALFORMED_REQUEST,
        f"no installed adapter recognises a {type(app).__module__}.{type(app).__qualname__} "
        f"(adapters: {names})",
    )


def draft_workflow(
    app: object,
    *,
    workflow_id: str,
    version: int = 1,
    adapters: Iterable[FrameworkAdapter] | None = None,
) -> Workflow:
    """The workflow the app's structure suggests, validated (DESIGN §6.3)."""
    adapter = adapter_for(app, adapters)
    return Workflow.from_mapping(
        adapter.draft_workflow(app, workflow_id=workflow_id, version=version)
    )


def agent_manifests(
    app: object, adapters: Iterable[FrameworkAdapter] | None = None
) -> list[AgentManifest]:
    """The manifests of the app's agents, as its adapter extracts them."""
    return list(adapter_for(app, adapters).manifests(app))


@contextlib.contextmanager
def _importable_from_cwd() -> Iterator[None]:
    """The app's modules are found from the current directory, as with ``python -m`` (the
    ``ajwt`` console script does not put it on ``sys.path``)."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(cwd)


def load_object(reference: str) -> object:
    """``package.module:attribute`` (``...:factory()`` calls a factory without arguments).

    >>> load_object("ajwt_core.workflow:reference_workflow()").id
    'vuln-patch'
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"{reference!r} is not 'module:object' (or 'module:factory()')",
        )
    call = attribute.endswith("()")
    attribute = attribute.removesuffix("()")
    try:
        with _importable_from_cwd():
            value: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST, f"cannot import {module_name!r}: {exc}"
        ) from None
    except AJWTError:
        raise
    except Exception as exc:  # noqa: BLE001 - the app's own code, told in one line
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"importing {module_name!r} ran its top-level code, which raised "
            f"{type(exc).__name__}: {exc} (build the app in a factory, "
            f"'{module_name}:factory()', to keep setup out of the import)",
        ) from None
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST, f"{module_name!r} has no attribute {attribute!r}"
            )
        value = getattr(value, part)
    if not call:
        return value
    try:
        return value()
    except AJWTError:
        raise
    except Exception as exc:  # noqa: BLE001 - the app's own code, told in one line
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST,
            f"{reference!r} raised {type(exc).__name__}: {exc}",
        ) from None
