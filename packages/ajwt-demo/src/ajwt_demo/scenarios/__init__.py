"""The reference workflow (DESIGN §11) on each framework, each module exposing
``scenario`` (:class:`ajwt_demo.scenario.Scenario`)."""
