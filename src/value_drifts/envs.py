"""Kept so that ``python -m value_drifts.envs`` still answers: it is ``value-drifts
check-envs`` (``value_drifts.core.envs``)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("value_drifts.core.envs", run_name="__main__", alter_sys=True)
