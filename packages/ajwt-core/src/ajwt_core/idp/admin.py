"""A small client for the IdP's administrator endpoints (clients, workflows, users)."""

from __future__ import annotations

from typing import Any

import httpx

from ajwt_core.errors import error_from_oauth


class AdminClient:
    """
    ``AdminClient(idp_url, admin_token)`` registers clients and workflows, issues local
    user tokens, approves steps and revokes, as an operator or a CI/CD job would.
    """

    def __init__(self, idp_url: str, admin_token: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(
            base_url=idp_url.rstrip("/"),
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=timeout,
        )

    def _post(self, path: str, body: Any) -> Any:
        response = self._http.post(path, json=body)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not response.is_success:
            raise error_from_oauth(data, response.status_code)
        return data

    def register_client(
        self,
        client_id: str | None = None,
        *,
        scopes: list[str],
        auth_method: str = "client_secret_basic",
        jwks: dict[str, Any] | None = None,
        allow_runtime_registration: bool = True,
        resources: list[str] | None = None,
    ) -> dict[str, Any]:
        """Register an OAuth client; ``resources``: the resource servers it stands for
        (it may introspect their tokens, RFC 7662)."""
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
        result: dict[str, Any] = self._post("/admin/clients", body)
        return result

    def register_workflow(self, definition: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/admin/workflows", definition)
        return result

    def user_token(self, subject: str, lifetime: int = 3600) -> str:
        result = self._post("/admin/users/token", {"subject": subject, "lifetime": lifetime})
        return str(result["access_token"])

    def approve(self, run_id: str, step: str, approved_by: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post(
            f"/admin/runs/{run_id}/steps/{step}/approve", {"approved_by": approved_by}
        )
        return result

    def revoke(self, kind: str, ident: str) -> dict[str, Any]:
        result: dict[str, Any] = self._post("/revocations", {"kind": kind, "id": ident})
        return result

    def ledger(self, run_id: str) -> dict[str, Any]:
        response = self._http.get(f"/runs/{run_id}/ledger")
        if not response.is_success:
            raise error_from_oauth(response.json(), response.status_code)
        result: dict[str, Any] = response.json()
        return result

    def verify_ledger(self, run_id: str) -> dict[str, Any]:
        response = self._http.get(f"/runs/{run_id}/ledger/verify")
        if not response.is_success:
            raise error_from_oauth(response.json(), response.status_code)
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        self._http.close()
