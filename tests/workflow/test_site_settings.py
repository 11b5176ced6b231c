"""An unset site variable of the SLURM profile (``$SLURM_ACCOUNT``) is named when the
workflow starts: an error before a real run submits anything, a warning in a dry run."""

from types import SimpleNamespace

import pytest
from snakemake.resources import Resources
from snakemake_interface_common.exceptions import WorkflowError

from tests.support.workflow import copy_repo, snakemake
from value_drifts.core.site_settings import (
    check_site_variables,
    resource_values,
    site_variables_message,
    unset_site_variables,
)

ACCOUNT_WARNING = (
    "Dry run only: environment variable SLURM_ACCOUNT not set: the profile's resources "
    "would reach SLURM as the literal text $SLURM_ACCOUNT."
)


def test_unset_variables_are_found_in_both_spellings():
    values = ["$SLURM_PARTITION", "${SLURM_ACCOUNT}", "'--qos=$QOS --comment=$QOS'", 8000, None]
    assert unset_site_variables(values, {}) == ["QOS", "SLURM_ACCOUNT", "SLURM_PARTITION"]
    # Set, even to the empty string (a site without accounts), is not unset.
    assert unset_site_variables(values, {"SLURM_ACCOUNT": "", "QOS": "long"}) == ["SLURM_PARTITION"]
    assert unset_site_variables(["gpu", "system_tmpdir", "$"], {}) == []


def _resource_settings(default: list[str], per_rule: dict[str, list[str]] | None = None):
    # As Snakemake builds them from a profile's default-resources and set-resources.
    return SimpleNamespace(
        default_resources=Resources.parse(default, allow_expressions=True),
        overwrite_resources={
            rule: Resources.parse(exprs, allow_expressions=True)
            for rule, exprs in (per_rule or {}).items()
        },
    )


def test_resource_values_are_the_profile_text_before_expansion():
    settings = _resource_settings(
        ["slurm_partition=$SLURM_PARTITION", "slurm_account=$SLURM_ACCOUNT", "runtime=60"],
        {"train_sft": ["slurm_extra='--qos=$QOS'"]},
    )
    assert resource_values(settings) == ["$SLURM_PARTITION", "$SLURM_ACCOUNT", 60, "'--qos=$QOS'"]
    assert resource_values(SimpleNamespace(default_resources=None, overwrite_resources={})) == []


def _workflow(dryrun: bool, main: bool = True):
    return SimpleNamespace(
        is_main_process=main,
        output_settings=SimpleNamespace(dryrun=dryrun),
        resource_settings=_resource_settings(
            ["slurm_partition=$SLURM_PARTITION", "slurm_account=$SLURM_ACCOUNT"]
        ),
    )


def test_a_real_run_stops_naming_every_unset_variable():
    with pytest.raises(WorkflowError) as error:
        check_site_variables(_workflow(dryrun=False), environ={})
    assert str(error.value).startswith(
        "environment variables SLURM_ACCOUNT, SLURM_PARTITION not set: the profile's resources "
        "would reach SLURM as the literal text $SLURM_ACCOUNT, $SLURM_PARTITION. Export them first"
    )
    environ = {"SLURM_ACCOUNT": "", "SLURM_PARTITION": "gpu"}
    assert check_site_variables(_workflow(dryrun=False), environ=environ) == []


def test_a_dry_run_warns_and_a_job_on_a_node_does_not_check(monkeypatch):
    import snakemake.logging

    warnings = []
    monkeypatch.setattr(snakemake.logging.logger, "warning", warnings.append)
    environ = {"SLURM_PARTITION": "gpu"}
    assert check_site_variables(_workflow(dryrun=True), environ=environ) == ["SLURM_ACCOUNT"]
    assert warnings == [site_variables_message(["SLURM_ACCOUNT"], dryrun=True)]
    assert warnings[0].startswith(ACCOUNT_WARNING)
    assert warnings[0].endswith("A real run stops here.")
    assert check_site_variables(_workflow(dryrun=False, main=False), environ={}) == []


# ---- the real command line with profiles/slurm (parsing and dry runs only) ---------------


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory):
    return copy_repo(tmp_path_factory.mktemp("site") / "value-drifts")


def _with_profile(clean_copy, *args):
    args = (*args, "--nolock", "--profile", "profiles/slurm")
    result = snakemake(*args, cwd=clean_copy, check=False)
    return result, result.stdout + result.stderr


def test_slurm_dry_run_warns_about_an_unset_account(clean_copy, monkeypatch):
    monkeypatch.delenv("SLURM_ACCOUNT", raising=False)
    monkeypatch.setenv("SLURM_PARTITION", "gpu")
    result, output = _with_profile(clean_copy, "-n")
    assert result.returncode == 0, output
    assert ACCOUNT_WARNING in output
    assert "SLURM_PARTITION not set" not in output
    assert "slurm_account=$SLURM_ACCOUNT" in output  # what the jobs would have carried


def test_slurm_dry_run_with_the_variables_set_says_nothing(clean_copy, monkeypatch):
    monkeypatch.setenv("SLURM_ACCOUNT", "")  # a site without accounts
    monkeypatch.setenv("SLURM_PARTITION", "gpu")
    result, output = _with_profile(clean_copy, "-n")
    assert result.returncode == 0, output
    assert "not set" not in output
    assert "slurm_partition=gpu, slurm_account=, " in output


def test_slurm_run_stops_before_submitting(clean_copy, monkeypatch):
    monkeypatch.delenv("SLURM_ACCOUNT", raising=False)
    monkeypatch.delenv("SLURM_PARTITION", raising=False)
    result, output = _with_profile(clean_copy)
    assert result.returncode == 1, output
    assert "environment variables SLURM_ACCOUNT, SLURM_PARTITION not set" in output
    assert "Building DAG of jobs" not in output  # stopped while reading the Snakefile
    assert not (clean_copy / ".snakemake/slurm_logs").exists()
