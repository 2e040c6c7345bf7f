"""A small client for the IdP's administrator endpoints, as an operator or a CI/CD job
uses them (the ``ajwt client``, ``workflow``, ``agents``, ``user`` and ``runs`` commands
are built on it).

Every refusal is raised as the IdP's typed error (:mod:`ajwt_core.errors`). Lists are
pages: ``{"items": [...], "next": cursor | None}``; :meth:`AdminClient.all` walks them.

>>> admin = AdminClient("http://127.0.0.1:9", "x" * 43)
>>> admin.close()
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from ajwt_core.checksum import AgentManifest
from ajwt_core.errors import error_from_oauth


class AdminClient:
    """
    ``AdminClient(idp_url, admin_token)`` registers clients, workflows and agent
    manifests, approves and revokes agent checksums, issues local user tokens, lists
    clients, workflows and runs, approves steps and revokes.
    """

    def __init__(
        self,
        idp_url: str,
        admin_token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.idp_url = idp_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.idp_url,
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        response = self._http.request(method, path, json=body, params=params)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not response.is_success:
            raise error_from_oauth(data, response.status_code)
        return data

    def _post(self, path: str, body: Any) -> Any:
        return self._send("POST", path, body)

    def _get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params={k: v for k, v in params.items() if v is not None})

    # ---------------------------------------------------------------- clients

    def register_client(
        self,
        client_id: str | None = None,
        *,
        scopes: list[str],
        auth_method: str = "client_secret_basic",
        jwks: dict[str, Any] | None = None,
        allow_runtime_registration: bool = True,
        resources: list[str] | None = None,
        agent_policy: str | None = None,
    ) -> dict[str, Any]:
        """Register an OAuth client; the answer holds its ``client_secret`` (shown once).

        ``resources``: the resource servers it stands for (it may introspect their tokens,
        RFC 7662). ``agent_policy``: ``open`` (any agent checksum registers), ``pinned``
        (only those registered with :meth:`pin_agents`) or ``approval`` (a new one waits
        for :meth:`approve_agent`).
        """
        body: dict[str, Any] = {
            "scopes": scopes,
            "auth_method": auth_method,
            "allow_runtime_registration": allow_runtime_registration,
        }
        if resources:
            body["resources"] = resources
        if client_id:
            body["client_id"] = client_id
        if jwks:
            body["jwks"] = jwks
        if agent_policy:
            body["agent_policy"] = agent_policy
        result: dict[str, Any] = self._post("/admin/clients", body)
        return result

    def clients(self, *, limit: int | None = None, after: str | None = None) -> dict[str, Any]:
        """One page of clients, by id."""
        result: dict[str, Any] = self._get("/admin/clients", limit=limit, after=after)
        return result

    def client(self, client_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/admin/clients/{_seg(client_id)}")
        return result

    def set_agent_policy(self, client_id: str, policy: str) -> dict[str, Any]:
        result: dict[str, Any] = self._send(
            "PUT", f"/admin/clients/{_seg(client_id)}/agent-policy", {"agent_policy": policy}
        )
        return result

    # ----------------------------------------------------------------- agents

    def agents(
        self,
        client_id: str,
        *,
        agent_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> dict[str, Any]:
        """One page of the checksums of the client's agents, with version and status."""
        result: dict[str, Any] = self._get(
            f"/admin/clients/{_seg(client_id)}/agents",
            agent_id=agent_id,
            status=status,
            limit=limit,
            after=after,
        )
        return result

    def pin_agents(
        self,
        client_id: str,
        manifests: Sequence[AgentManifest | Mapping[str, Any]],
        *,
        decided_by: str = "administrator",
    ) -> list[dict[str, Any]]:
        """Register (pin) these manifests' checksums for the client."""
        body = {
            "manifests": [
                m.model_dump(mode="json") if isinstance(m, AgentManifest) else dict(m)
                for m in manifests
            ],
            "decided_by": decided_by,
        }
        result = self._post(f"/admin/clients/{_seg(client_id)}/agents", body)
        items: list[dict[str, Any]] = result["items"]
        return items

    def approve_agent(
        self, client_id: str, agent_id: str, checksum: str, *, decided_by: str = "administrator"
    ) -> dict[str, Any]:
        """Approve a checksum waiting under the ``approval`` policy."""
        body = {"agent_id": agent_id, "checksum": checksum, "decided_by": decided_by}
        result: dict[str, Any] = self._post(
            f"/admin/clients/{_seg(client_id)}/agents/approve", body
        )
        return result

    def revoke_agent(
        self, client_id: str, agent_id: str, checksum: str, *, decided_by: str = "administrator"
    ) -> dict[str, Any]:
        """Refuse a checksum from now on and revoke its live registrations."""
        body = {"agent_id": agent_id, "checksum": checksum, "decided_by": decided_by}
        path = f"/admin/clients/{_seg(client_id)}/agents/revoke"
        result: dict[str, Any] = self._post(path, body)
        return result

    # -------------------------------------------------------------- workflows

    def register_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/admin/workflows", definition)
        return result

    def workflows(
        self,
        *,
        workflow_id: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> dict[str, Any]:
        """One page of registered workflow versions (id, version, hash)."""
        result: dict[str, Any] = self._get(
            "/admin/workflows", workflow_id=workflow_id, limit=limit, after=after
        )
        return result

    def workflow(self, workflow_id: str, version: int | None = None) -> dict[str, Any]:
        """A registered workflow (the latest version without ``version``):
        ``{"workflow": canonical form, "hash": workflow_hash}``."""
        path = f"/admin/workflows/{_seg(workflow_id)}"
        if version is not None:
            path += f"/{int(version)}"
        result: dict[str, Any] = self._get(path)
        return result

    # ------------------------------------------------------------ users, runs

    def user_token(self, subject: str, lifetime: int = 3600) -> str:
        result = self._post("/admin/users/token", {"subject": subject, "lifetime": lifetime})
        return str(result["access_token"])

    def runs(
        self,
        *,
        client_id: str | None = None,
        workflow_id: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> dict[str, Any]:
        """One page of runs, newest first."""
        result: dict[str, Any] = self._get(
            "/admin/runs",
            client_id=client_id,
            workflow_id=workflow_id,
            state=state,
            limit=limit,
            after=after,
        )
        return result

    def run(self, run_id: str) -> dict[str, Any]:
        """One run: its record, its position in its workflow, its ledger's length."""
        result: dict[str, Any] = self._get(f"/admin/runs/{_seg(run_id)}")
        return result

    def approve(self, run_id: str, step: str, approved_by: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post(
            f"/admin/runs/{_seg(run_id)}/steps/{_seg(step)}/approve", {"approved_by": approved_by}
        )
        return result

    def revoke(self, kind: str, ident: str) -> dict[str, Any]:
        """Revoke a run, an intent, an agent registration or a client (``kind`` ``run``,
        ``intent``, ``agent``, ``client``), whichever client it belongs to. Answers
        ``{"revoked": True}`` (``False``: no such id), plus ``"published"`` when the IdP
        publishes revocations to Redis (``False``: announced once Redis answers)."""
        result: dict[str, Any] = self._post("/revocations", {"kind": kind, "id": ident})
        return result

    def ledger(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/runs/{_seg(run_id)}/ledger")
        return result

    def verify_ledger(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._get(f"/runs/{_seg(run_id)}/ledger/verify")
        return result

    def all(self, page_of: Any, /, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, e.g. ``admin.all(admin.runs, state="open")``."""
        after: str | None = None
        while True:
            page = page_of(after=after, **params)
            yield from page["items"]
            after = page.get("next")
            if not after:
                return

    def close(self) -> None:
        self._http.close()


def _seg(value: str) -> str:
    """A path segment: percent-encoded, so an id can never change the path."""
    return quote(value, safe="")
