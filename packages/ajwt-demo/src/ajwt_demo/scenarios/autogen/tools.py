"""The four tools of the reference workflow as AutoGen ``FunctionTool``s.

Plain tool code: each calls the reference resource server with ``httpx`` and the
``httpx.Auth`` it is given: the shim's, which attaches the acting agent's token and
proof, or (for the plain-OAuth baseline) the application's bearer token. ``read_file``
is a *sync* function on purpose: AutoGen runs it in a worker thread, where the adapter
must carry the acting context (FRAMEWORKS.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import httpx
from autogen_core.tools import FunctionTool

from ajwt_demo.agents import TOOLS


class ToolError(RuntimeError):
    """The resource server refused or failed the call (the model sees this text)."""


def _result(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if not response.is_success:
        raise ToolError(f"HTTP {response.status_code}: {json.dumps(body)[:300]}")
    return json.dumps(body, sort_keys=True)


class PatcherApi:
    """The reference API as tools, for one team (one pair of HTTP clients)."""

    def __init__(self, rs_url: str, auth: httpx.Auth) -> None:
        self.http = httpx.AsyncClient(base_url=rs_url, auth=auth, timeout=10.0)
        self.sync_http = httpx.Client(base_url=rs_url, auth=auth, timeout=10.0)

    async def list_repos(self) -> str:
        return _result(await self.http.get("/repos"))

    def read_file(
        self,
        repo: Annotated[str, "owner/name"],
        path: Annotated[str, "file path in the repository"],
    ) -> str:
        return _result(self.sync_http.get(f"/repos/{repo}/files/{path}"))

    async def query_advisories(self, package: str) -> str:
        return _result(await self.http.get("/advisories", params={"package": package}))

    async def create_pull_request(self, repo: str, title: str, head: str) -> str:
        body = {"title": title, "head": head}
        return _result(await self.http.post(f"/repos/{repo}/pulls", json=body))

    def tools(self) -> dict[str, FunctionTool]:
        """One ``FunctionTool`` per reference tool, with the reference descriptions."""
        functions: dict[str, Callable[..., Any]] = {
            "list_repos": self.list_repos,
            "read_file": self.read_file,
            "query_advisories": self.query_advisories,
            "create_pull_request": self.create_pull_request,
        }
        return {
            name: FunctionTool(function, description=TOOLS[name].description, name=name)
            for name, function in functions.items()
        }

    async def aclose(self) -> None:
        await self.http.aclose()
        self.sync_http.close()
