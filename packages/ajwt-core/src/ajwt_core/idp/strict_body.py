"""The IdP's JSON request bodies, read strictly (a wire-level probe found them lax).

FastAPI reads a JSON body with ``json.loads``: a key twice in one object is "the last one
wins" (``{"manifest": {"agent_id": "lister", "agent_id": "other"}}`` registered
``other``), and UTF-16 is accepted. :class:`StrictJSONRoute` gives every route a request
whose :meth:`~StrictJSONRequest.json` is :func:`ajwt_core.strict_json.loads_unique`:
UTF-8 only (RFC 8259 §8.1), no repeated key; either is a 400 with an OAuth error body
naming the problem (an ``HTTPException``, which FastAPI passes on as it is raised).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from ajwt_core.request_limits import BodyTooLarge
from ajwt_core.strict_json import DuplicateKey, loads_unique


class StrictJSONRequest(Request):
    """A request whose JSON body is UTF-8 with no key twice in one object, and whose body
    past the IdP's bound is a 413 wherever it is read (FastAPI turns any other error
    while it reads a body into a 400)."""

    async def body(self) -> bytes:
        try:
            return await super().body()
        except BodyTooLarge:
            raise HTTPException(413, "request body too large") from None

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = loads_unique(body)
            except DuplicateKey as exc:
                raise HTTPException(
                    400, f"the JSON body repeats the key {exc.key!r} in one object"
                ) from None
            except UnicodeDecodeError:
                raise HTTPException(400, "the JSON body is not UTF-8 (RFC 8259)") from None
            except json.JSONDecodeError as exc:
                raise HTTPException(
                    400, f"the body is not JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}"
                ) from None
            except RecursionError:
                raise HTTPException(400, "the JSON body is nested too deeply") from None
        return self._json


class StrictJSONRoute(APIRoute):
    """An ``APIRoute`` whose handler reads JSON bodies with :class:`StrictJSONRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
