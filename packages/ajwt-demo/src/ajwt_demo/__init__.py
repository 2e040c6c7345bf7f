"""The A-JWT demo (``ajwt demo``): the reference workflow of DESIGN §11 on each framework,
with plain OAuth and with A-JWT, the attacks of the threat model against both, and the
report. It depends on the core and the adapters; nothing depends on it.

- :mod:`ajwt_demo.stack`: an embedded IdP and the reference API (also used by tests);
- :mod:`ajwt_demo.api`, :mod:`ajwt_demo.agents`: the reference API and agents;
- :mod:`ajwt_demo.scenarios`: the workflow on LangGraph, AutoGen and CrewAI;
- :mod:`ajwt_demo.run`, :mod:`ajwt_demo.attacks`, :mod:`ajwt_demo.report`: the demo.
"""
