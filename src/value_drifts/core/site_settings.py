"""Site settings a Snakemake profile takes from the environment (profiles/slurm: the SLURM
partition and account), checked when the workflow starts instead of at the first sbatch.

Snakemake expands a profile's ``$NAME`` with ``os.path.expandvars`` when it evaluates a
resource, which leaves an unset variable as it was: ``slurm_account: "$SLURM_ACCOUNT"``
would reach the SLURM executor plugin as the account named ``$SLURM_ACCOUNT``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

# os.path.expandvars' own pattern (posixpath._varprog): $NAME or ${NAME}.
VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)


def unset_site_variables(values: Iterable[Any], environ: Mapping[str, str]) -> list[str]:
    """Names of the environment variables that the string ``values`` reference as
    ``$NAME`` or ``${NAME}`` and that ``environ`` does not set, sorted, each once. A
    variable set to the empty string counts as set: it expands to an empty value."""
    names = set()
    for value in values:
        if isinstance(value, str):
            for match in VARIABLE.finditer(value):
                names.add(match.group(1).removeprefix("{").removesuffix("}"))
    return sorted(name for name in names if name not in environ)


def resource_values(resource_settings: Any) -> list[Any]:
    """The unevaluated values of a Snakemake ``ResourceSettings``' default resources
    (``default-resources`` in a profile) and per-rule ones (``set-resources``), as the
    profile wrote them (each ``Resource``'s ``raw``)."""
    groups = [resource_settings.default_resources or {}]
    groups += list((resource_settings.overwrite_resources or {}).values())
    return [getattr(value, "raw", value) for group in groups for value in group.values()]


def site_variables_message(names: list[str], dryrun: bool) -> str:
    """What to tell the user about unset site variables ``names`` (non-empty)."""
    listed = ", ".join(names)
    literal = ", ".join(f"${name}" for name in names)
    what = "variable" if len(names) == 1 else "variables"
    message = (
        f"environment {what} {listed} not set: the profile's resources would reach SLURM "
        f"as the literal text {literal}. Export {'it' if len(names) == 1 else 'them'} "
        "first; an empty value is fine (with SLURM_ACCOUNT= the plugin guesses the account "
        "from sacct or submits without --account; with SLURM_PARTITION= it takes the "
        "cluster's default partition)."
    )
    if dryrun:
        return f"Dry run only: {message} A real run stops here."
    return message


def check_site_variables(workflow: Any, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Stop a run whose resources reference an unset environment variable before it
    submits anything (Snakemake's ``WorkflowError``), and warn in a dry run; returns the
    unset names. Only the main Snakemake process checks (a job's own Snakemake on a node
    runs in remote mode, after the submitting process has checked)."""
    if not workflow.is_main_process:
        return []
    names = unset_site_variables(resource_values(workflow.resource_settings), environ)
    if not names:
        return []
    dryrun = workflow.output_settings.dryrun
    message = site_variables_message(names, dryrun)
    if not dryrun:
        from snakemake_interface_common.exceptions import WorkflowError

        raise WorkflowError(message)
    from snakemake.logging import logger

    logger.warning(message)
    return names
