"""CrewAI tools whose every run is bound to the calling agent.

:func:`ajwt_tool` is ``crewai.tools.tool`` with A-JWT: the function becomes a CrewAI
tool (same name, docstring description and argument schema, so the agent's manifest is
unchanged) and each run goes through :meth:`CrewAIBinding.call_tool
<ajwt_crewai.binding.CrewAIBinding.call_tool>`: the agent CrewAI is executing is
resolved, its step found, its intent token minted, and the function runs with the
shim's acting context set, so ``httpx`` calls with ``shim.auth()`` carry that agent's
token and proof. A refusal raises before the function runs; CrewAI hands the agent the
error as the tool's result. :func:`secure_tool` does the same for an existing tool.

The guard sits in ``_run`` / ``_arun``, which every CrewAI execution path reaches
(``BaseTool.run``, ``arun`` and the structured-tool path), and secured tools are never
cached: a cached result would reach an agent without its own authorisation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from crewai.tools import BaseTool
from crewai.tools import tool as crewai_tool
from pydantic import Field

from ajwt_core.shim import Shim
from ajwt_crewai.binding import binding_for
from ajwt_crewai.hooks import install_hooks

__all__ = ["AJWTTool", "ajwt_tool", "secure_tool"]

R = TypeVar("R")


def never_cache(_args: Any = None, _result: Any = None) -> bool:
    """CrewAI ``cache_function`` of secured tools: results are never cached."""
    return False


class AJWTTool(BaseTool):
    """A CrewAI tool that runs ``wrapped`` as the calling agent, under A-JWT.

    Build it with :func:`secure_tool` or :func:`ajwt_tool`. ``step`` pins the workflow
    step (default: resolved from the agent and the tool); ``audience`` mints the token
    for that resource before the tool runs when the shim has no ``default_audience``.
    """

    wrapped: BaseTool = Field(exclude=True, repr=False)
    shim: Shim = Field(exclude=True, repr=False)
    step: str | None = None
    audience: str | None = None

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        return binding_for(self.shim).call_tool(
            self.name,
            lambda: self.wrapped.run(*args, **kwargs),
            step=self.step,
            audience=self.audience,
        )

    async def _arun(self, *args: Any, **kwargs: Any) -> Any:
        async def run_wrapped() -> Any:
            return await self.wrapped.arun(*args, **kwargs)

        return await binding_for(self.shim).acall_tool(
            self.name, run_wrapped, step=self.step, audience=self.audience
        )

    def format_output_for_agent(self, raw_result: Any) -> str:
        return self.wrapped.format_output_for_agent(raw_result)


def secure_tool(
    tool: BaseTool, shim: Shim, *, step: str | None = None, audience: str | None = None
) -> AJWTTool:
    """``tool`` as an :class:`AJWTTool`: same name, description and argument schema.

    >>> from crewai.tools import tool
    >>> @tool("list_repos")
    ... def list_repos() -> str:
    ...     '''List the organisation's repositories with their dependencies.'''
    ...     return "[]"
    >>> secured = secure_tool(list_repos, Shim("http://127.0.0.1:9", "app", client_secret="s"))
    >>> secured.name, secured.description
    ('list_repos', "List the organisation's repositories with their dependencies.")
    """
    if isinstance(tool, AJWTTool):
        tool = tool.wrapped
    install_hooks()
    return AJWTTool(
        name=tool.name,
        description=tool.description,
        args_schema=tool.args_schema,
        result_schema=tool.result_schema,
        result_as_answer=tool.result_as_answer,
        max_usage_count=tool.max_usage_count,
        tool_failure_policy=tool.tool_failure_policy,
        cache_function=never_cache,
        wrapped=tool,
        shim=shim,
        step=step,
        audience=audience,
    )


@overload
def ajwt_tool(
    shim: Shim,
    name: None = None,
    *,
    step: str | None = None,
    audience: str | None = None,
    result_as_answer: bool = False,
    max_usage_count: int | None = None,
) -> Callable[[Callable[..., R]], AJWTTool]: ...


@overload
def ajwt_tool(
    shim: Shim,
    name: str,
    *,
    step: str | None = None,
    audience: str | None = None,
    result_as_answer: bool = False,
    max_usage_count: int | None = None,
) -> Callable[[Callable[..., R]], AJWTTool]: ...


def ajwt_tool(
    shim: Shim,
    name: str | None = None,
    *,
    step: str | None = None,
    audience: str | None = None,
    result_as_answer: bool = False,
    max_usage_count: int | None = None,
) -> Callable[[Callable[..., R]], AJWTTool]:
    """Decorator: the function as a CrewAI tool (as ``crewai.tools.tool`` makes it)
    whose runs are bound to the calling agent.

    The docstring is the description and the signature the argument schema; ``name``
    defaults to the function's name.

    >>> shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    >>> @ajwt_tool(shim)
    ... def query_advisories(package: str) -> str:
    ...     '''Look up security advisories for a package.'''
    ...     return package
    >>> query_advisories.name, type(query_advisories).__name__
    ('query_advisories', 'AJWTTool')
    """

    def decorate(func: Callable[..., R]) -> AJWTTool:
        made = crewai_tool(
            name or func.__name__,
            result_as_answer=result_as_answer,
            max_usage_count=max_usage_count,
        )(func)
        return secure_tool(made, shim, step=step, audience=audience)

    return decorate
