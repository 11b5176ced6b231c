"""Kept so that ``python -m value_drifts.judge.plan_cost`` still answers: it is
``value-drifts cost-plan`` (``value_drifts.commands.cost_plan``)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("value_drifts.commands.cost_plan", run_name="__main__", alter_sys=True)
