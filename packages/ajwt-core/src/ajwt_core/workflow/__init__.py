"""Registered workflows (DESIGN §6.3): the document, its graph, and a run's position in it.

- :mod:`~ajwt_core.workflow.model`: the validated document (:class:`Workflow`,
  :class:`Step`), its canonical form and hash, and graph queries;
- :mod:`~ajwt_core.workflow.state`: :class:`RunState`, what a run may do next, rebuilt
  from its ledger (the IdP's decisions, and the shim's local copy of them);
- :mod:`~ajwt_core.workflow.source`: documents as JSON or YAML text, with line numbers;
- :mod:`~ajwt_core.workflow.render`: the graph as a terminal tree or a Mermaid diagram.

>>> wf = reference_workflow()
>>> wf.topological_order()
['triage', 'plan', 'classify', 'patch']
>>> RunState(wf).check_mint("planner", "plan", "read_file")
Traceback (most recent call last):
ajwt_core.errors.InvalidGrant: tool 'read_file' of agent 'planner' belongs to step 'plan', \
which cannot run yet: it waits for step 'triage' (agent 'supervisor'); due now: step 'triage' \
(agent 'supervisor')
"""

from ajwt_core.workflow.model import (
    MAX_NAME_LENGTH,
    MAX_VISITS,
    MAX_WORKFLOW_JSON_BYTES,
    MAX_WORKFLOW_STEPS,
    MAX_WORKFLOW_VERSION,
    Consultation,
    Step,
    ToolName,
    Workflow,
    WorkflowError,
    reference_workflow,
)
from ajwt_core.workflow.state import (
    STATE_EVENTS,
    Delegated,
    DelegationDecision,
    MintDecision,
    RunState,
)

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_VISITS",
    "MAX_WORKFLOW_JSON_BYTES",
    "MAX_WORKFLOW_STEPS",
    "MAX_WORKFLOW_VERSION",
    "STATE_EVENTS",
    "Consultation",
    "Delegated",
    "DelegationDecision",
    "MintDecision",
    "RunState",
    "Step",
    "ToolName",
    "Workflow",
    "WorkflowError",
    "reference_workflow",
]
