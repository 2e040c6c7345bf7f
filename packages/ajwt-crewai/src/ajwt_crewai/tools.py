"""CrewAI tools whose every run is bound to the calling agent.

:func:`ajwt_tool` is ``crewai.tools.tool`` with A-JWT: the function becomes a CrewAI
tool (same name, docstring description and argument schema, so the agent's manifest is
unchanged) and each run goes through :meth:`CrewAIBinding.call_tool
<ajwt_crewai.binding.CrewAIBinding.call_tool>`: the agent CrewAI is executing is
resolved, its step found, its intent token minted, and the function runs with the
shim's acting context set, so ``httpx`` calls with ``shim.auth()`` carry that agent's
token and proof. A refusal raises before the function runs; CrewAI hands the agent the
error as the tool's result. :func:`secure_tool` does the same for an existing tool
(a ``BaseTool`` instance, or a ``BaseTool`` subclass that takes no arguments), and
``ajwt_tool(shim)`` also accepts a tool that is already a CrewAI tool.

The guard sits in ``_run`` / ``_arun``, which every CrewAI execution path reaches
(``BaseTool.run``, ``arun`` and the structured-tool path). Caching: a secured tool keeps
its own ``cache_function``, but its results are cached only in the cache
:func:`~ajwt_crewai.binding.secure_crew` installs, which is keyed by workflow agent, run
and step (:class:`~ajwt_crewai.cache.StepCache`): a result never reaches another agent,
or the same agent in another step. In any other cache they are never stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from crewai.tools import BaseTool
from crewai.tools import tool as crewai_tool
from crewai.utilities.string_utils import sanitize_tool_name
from pydantic import Field

from ajwt_core.shim import Shim
from ajwt_crewai.binding import binding_for
from ajwt_crewai.cache import in_step_cache
from ajwt_crewai.calls import current_call
from ajwt_crewai.hooks import install_hooks

__all__ = ["AJWTTool", "ajwt_tool", "secure_tool"]

R = TypeVar("R")


def never_cache(_args: Any = None, _result: Any = None) -> bool:
    """A ``cache_function`` that never caches."""
    return False


def cache_in_step_only(args: Any = None, result: Any = None) -> bool:
    """The ``cache_function`` of secured tools: the wrapped tool's own decides, and only
    when the calling agent's cache is keyed by agent and step (any other cache never
    stores a secured tool's result). Module-level, so CrewAI can serialise it."""
    call = current_call()
    if call is None or call.agent is None or not in_step_cache():
        return False
    secured = next(
        (
            t
            for t in call.agent.tools or []
            if isinstance(t, AJWTTool) and sanitize_tool_name(t.name) == call.tool_name
        ),
        None,
    )
    return secured is not None and bool(secured.wrapped.cache_function(args, result))


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
    tool: BaseTool | type[BaseTool],
    shim: Shim,
    *,
    step: str | None = None,
    audience: str | None = None,
) -> AJWTTool:
    """``tool`` as an :class:`AJWTTool`: same name, description, argument schema and
    ``cache_function``. ``tool`` is a CrewAI tool, or a ``BaseTool`` subclass (made
    with no arguments).

    >>> from crewai.tools import tool
    >>> @tool("list_repos")
    ... def list_repos() -> str:
    ...     '''List the organisation's repositories with their dependencies.'''
    ...     return "[]"
    >>> secured = secure_tool(list_repos, Shim("http://127.0.0.1:9", "app", client_secret="s"))
    >>> secured.name, secured.description
    ('list_repos', "List the organisation's repositories with their dependencies.")
    """
    if isinstance(tool, type):
        if not issubclass(tool, BaseTool):
            raise TypeError(f"secure_tool needs a CrewAI BaseTool, not the class {tool.__name__}")
        # A subclass gives its name and description defaults (else pydantic says so).
        tool = tool()  # type: ignore[call-arg]
    if not isinstance(tool, BaseTool):
        raise TypeError(f"secure_tool needs a CrewAI BaseTool, not {type(tool).__name__}")
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
        cache_function=cache_in_step_only,
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
) -> Callable[[Callable[..., R] | BaseTool], AJWTTool]: ...


@overload
def ajwt_tool(
    shim: Shim,
    name: str,
    *,
    step: str | None = None,
    audience: str | None = None,
    result_as_answer: bool = False,
    max_usage_count: int | None = None,
) -> Callable[[Callable[..., R] | BaseTool], AJWTTool]: ...


def ajwt_tool(
    shim: Shim,
    name: str | None = None,
    *,
    step: str | None = None,
    audience: str | None = None,
    result_as_answer: bool = False,
    max_usage_count: int | None = None,
) -> Callable[[Callable[..., R] | BaseTool], AJWTTool]:
    """Decorator: the function as a CrewAI tool (as ``crewai.tools.tool`` makes it)
    whose runs are bound to the calling agent.

    The docstring is the description and the signature the argument schema; ``name``
    defaults to the function's name. Given a CrewAI tool instead of a function
    (``ajwt_tool(shim)(existing_tool)``), it secures that tool (:func:`secure_tool`).

    >>> shim = Shim("http://127.0.0.1:9", "app", client_secret="s")
    >>> @ajwt_tool(shim)
    ... def query_advisories(package: str) -> str:
    ...     '''Look up security advisories for a package.'''
    ...     return package
    >>> query_advisories.name, type(query_advisories).__name__
    ('query_advisories', 'AJWTTool')
    """

    def decorate(func: Callable[..., R] | BaseTool) -> AJWTTool:
        if isinstance(func, BaseTool) or (isinstance(func, type) and issubclass(func, BaseTool)):
            return secure_tool(func, shim, step=step, audience=audience)
        made = crewai_tool(
            name or func.__name__,
            result_as_answer=result_as_answer,
            max_usage_count=max_usage_count,
        )(func)
        return secure_tool(made, shim, step=step, audience=audience)

    return decorate
