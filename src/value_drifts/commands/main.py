"""``value-drifts``: the workflow's short commands for common cases.

``value-drifts trace`` (below), ``value-drifts value-gap`` (``commands.value_gap``: the
value gap of your own preference file), ``value-drifts cost-plan`` (``commands.cost_plan``:
what judging a config will cost, and the disk its checkpoints need), ``value-drifts
check-envs`` (``core.envs``: each conda env's requirements resolve) and ``value-drifts
labels sample`` (``commands.labels``: a stratified sample of a results tree's answers to
label by hand). The older entry points
``value-gap``, ``python -m value_drifts.judge.plan_cost`` and ``python -m
value_drifts.envs`` run the same code.

``value-drifts trace FOLDER [--start MODEL] [--judge JUDGE.yaml] [--directory DIR]``
writes a config with one trace (a folder of ``checkpoint-N`` folders, see
``value_drifts.core.traces``) and runs the workflow on it in DIR (default
``./value-drifts-<name>``), so a folder of checkpoints needs no YAML to get a drift table
and figures. Without ``--judge`` it uses the small default's judge (SmolLM2-135M adapted to
the prompt), whose numbers are for smoke tests only, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from value_drifts.core.layout import (
    FIGURES,
    TRACES,
    figure,
    judge_health_path,
    table,
    trace_figure_name,
    trace_table_name,
)
from value_drifts.core.plan import slug
from value_drifts.core.study import StudyError, load_study
from value_drifts.core.traces import trace_name_problem

CHECKOUT = Path(__file__).resolve().parents[3]
SMALL_DEFAULT = CHECKOUT / "config" / "config.yaml"
# What a trace-only study keeps of the small default: its questions, generation, judge
# and analysis. Training sections stay (the schema needs them) but train nothing.
DROPPED = ("preference_sets", "preference_optimization", "dataset_stances", "downstream",
           "vprism", "value_gap")
# Folders of the checkout the config's relative paths point into (linked into DIR).
LINKED = ("config", "resources")
SMOKE_TEST_WARNING = (
    "WARNING: no --judge given: the small default's judge (SmolLM2-135M adapted to the "
    "prompt) reads these answers. Its numbers are for smoke tests only, not measurements; "
    "pass --judge JUDGE.yaml (a judge: mapping as in the config) for real ones."
)


def without_its_study(config: dict[str, Any]) -> dict[str, Any]:
    """The small default without what belongs to its own study: the ``DROPPED``
    sections, the analysis' contrasts (they name its runs) and the judge's reference
    judge and prompt audit (they read its answers): a base for a study of other runs."""
    config = {key: value for key, value in config.items() if key not in DROPPED}
    config["analysis"] = {k: v for k, v in config.get("analysis", {}).items()
                          if k != "contrasts"}
    config["judge"] = {k: v for k, v in config["judge"].items()
                       if k not in ("reference", "audit", "audit_answers")}
    return config


def trace_name(folder: Path) -> str:
    """A trace name from a folder name: lower case, digits and hyphens."""
    return slug(folder.resolve().name) or "trace"


def trace_config(folder: Path, start: Path | None, judge: dict[str, Any] | None,
                 prompt_style: str, name: str) -> dict[str, Any]:
    """The small default reduced to one trace of ``folder`` (absolute paths), with
    ``judge`` in place of its judge when given."""
    config = without_its_study(yaml.safe_load(SMALL_DEFAULT.read_text()))
    config["sft"]["runs"] = []  # nothing is trained
    # the small default asks about its planted topics and two controls; a trace of your
    # own checkpoints is asked about every category of the questions file
    config["questions"].pop("categories", None)
    config["traces"] = {name: {"checkpoints": str(folder.resolve()), "prompt_style": prompt_style}}
    if start is not None:
        config["traces"][name]["start"] = str(start.resolve())
    if judge is not None:
        config["judge"] = judge
    return config


def read_judge(path: Path) -> dict[str, Any]:
    """The ``judge:`` mapping of a YAML file (as ``value-gap --judge-config`` reads it)."""
    data = yaml.safe_load(path.read_text()) or {}
    judge = data.get("judge", data) if isinstance(data, dict) else None
    if not isinstance(judge, dict) or "backend" not in judge:
        raise SystemExit(f"{path}: expected a judge: mapping with a backend (as in the config)")
    return judge


def targets(name: str, topics: list[str]) -> list[str]:
    return [
        table(trace_table_name(name)),
        judge_health_path(TRACES, name),
        *[figure(trace_figure_name(name, slug(t))) for t in topics],
    ]


def run_trace(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder of checkpoint-N folders")
    name = args.name or trace_name(folder)
    if problem := trace_name_problem(name):  # before anything is made from it
        raise SystemExit(f"--name: {problem}")
    directory = Path(args.directory or f"value-drifts-{name}").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for link in LINKED:  # the config's relative paths (topics, prompts, questions)
        target = directory / link
        if not target.exists():
            target.symlink_to(CHECKOUT / link, target_is_directory=True)
    judge = read_judge(Path(args.judge)) if args.judge else None
    if judge is None:
        print(SMOKE_TEST_WARNING, file=sys.stderr)
    config = trace_config(folder, Path(args.start) if args.start else None, judge,
                          args.prompt_style, name)
    config_path = directory / "trace.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    try:  # the study the workflow will build, checked before Snakemake starts
        with contextlib.chdir(directory):  # the config's paths are relative to it
            topics = load_study(config).figure_topics
    except StudyError as error:
        raise SystemExit(f"{config_path}: {error}") from None
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(CHECKOUT / "Snakefile"),
        "--directory", str(directory), "--configfile", str(config_path),
        "--cores", str(args.cores), *(["--dry-run"] if args.dry_run else []),
        *targets(name, topics),
    ]
    print(f"trace {name}: {folder} -> {directory}", file=sys.stderr)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(CHECKOUT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run(command, env=env)  # Snakemake's progress goes to the terminal
    if result.returncode or args.dry_run:
        return result.returncode
    table = directory / targets(name, topics)[0]
    print(table.read_text())
    print(f"drift table: {table}\nfigures: {directory / FIGURES}")
    if judge is None:
        print(SMOKE_TEST_WARNING, file=sys.stderr)
    return 0


# Subcommands with a parser of their own: name -> (module with main(argv), help).
FORWARDED = {
    "value-gap": ("value_drifts.commands.value_gap",
                  "the value gap of a preference file (value-drifts value-gap --help)"),
    "cost-plan": ("value_drifts.commands.cost_plan",
                  "judge calls and cost, and checkpoint disk, a config will need "
                  "(value-drifts cost-plan --help)"),
    "check-envs": ("value_drifts.core.envs",
                   "resolve each conda env's requirements (value-drifts check-envs --help)"),
    "restore-times": ("value_drifts.commands.restore_times",
                      "give a results tree copied without its file times its recorded times"),
    "labels": ("value_drifts.commands.labels",
               "a stratified sample of stored answers to label by hand "
               "(value-drifts labels sample --help)"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in FORWARDED:
        module = importlib.import_module(FORWARDED[argv[0]][0])
        sys.exit(module.main(argv[1:]))
    parser = argparse.ArgumentParser(prog="value-drifts", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, summary) in FORWARDED.items():
        commands.add_parser(name, help=summary, add_help=False)
    trace = commands.add_parser(
        "trace", help="value drift of a folder of checkpoint-N folders (no training)")
    trace.add_argument("folder", help="a folder of checkpoint-N folders (HF Trainer / TRL layout)")
    trace.add_argument("--start", help="the model at step 0 (a model folder)")
    trace.add_argument("--judge", help="a YAML file with a judge: mapping, as in the config")
    trace.add_argument("--directory", help="where results go (default ./value-drifts-<name>)")
    trace.add_argument("--name", help="the trace's name (default: from the folder name)")
    trace.add_argument("--prompt-style", choices=["chat", "base"], default="chat",
                       help="chat: the checkpoints' chat template; base: question + 'Response:'")
    trace.add_argument("--cores", type=int, default=2)
    trace.add_argument("--dry-run", action="store_true", help="show the jobs, run nothing")
    args = parser.parse_args(argv)
    sys.exit(run_trace(args))


if __name__ == "__main__":
    main()
