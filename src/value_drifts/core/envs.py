"""Which conda environment (``envs/<name>.yaml``) each job runs in, and a check that each
one resolves.

One environment per backend kind, plus two per stage:

- ``train``: torch, transformers, trl, accelerate, DeepSpeed (training, base-model
  preparation, judge adaptation);
- ``transformers``: local models through transformers (generation, the local judge,
  lm-eval's ``hf`` backend, the transformers teacher / V-PRISM LLM);
- ``vllm``: vLLM's offline engine (generation, judge) and lm-eval's ``vllm`` backend, with
  vLLM's own torch / transformers / numpy pins (``envs/constraints-vllm.txt``);
- ``api``: OpenAI-protocol clients (the ``openai`` / ``openai_batch`` judges, the
  ``openai_chat`` teacher and V-PRISM LLM);
- ``analysis``: data preparation, aggregation, tables, figures, V-PRISM clustering.

Each env file pins, with ``==``, every distribution the project declares for it (the core
``[project] dependencies`` and the extra of the same name in pyproject.toml), installs the
project as ``-e ${VALUE_DRIFTS_ROOT}[<extra>]`` and constrains everything else it pulls in
with ``-c`` (requirements.txt, or envs/constraints-vllm.txt). The project root comes from
the environment variable because Snakemake copies an env file to ``.snakemake/conda/``
before ``conda env create`` runs pip there, so a path relative to ``envs/`` would point
elsewhere; pip expands ``${VAR}`` in requirement files.

Rules (rules/*.smk) name their env with :func:`conda_env`; tests/workflow/test_envs.py checks every
env file against requirements.txt, pyproject.toml and
:data:`value_drifts.core.backends.BACKEND_IMPORTS`; ``make check-envs`` (``value-drifts
check-envs``) runs pip's resolver on each env (dry run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from value_drifts.core.backends import BACKEND_ENVS

PROJECT_ROOT = Path(__file__).resolve().parents[3]
ENVS_DIR = PROJECT_ROOT / "envs"
# Set to the project root for conda's pip (see the module docstring).
ROOT_VARIABLE = "VALUE_DRIFTS_ROOT"

# Environments that are one stage's, whatever the backends: rules write conda_env("train").
STAGE_ENVS = ("train", "analysis")
ENV_NAMES = ("train", "transformers", "vllm", "api", "analysis")

# Top-level module -> the distribution that provides it, where the names differ or the
# project imports it. Used by tests/workflow/test_envs.py.
MODULE_DISTRIBUTIONS = {
    "accelerate": "accelerate",
    "datasets": "datasets",
    "deepspeed": "deepspeed",
    "gguf": "gguf",
    "hdbscan": "hdbscan",
    "huggingface_hub": "huggingface-hub",
    "jsonschema": "jsonschema",
    "krippendorff": "krippendorff",
    "lm_eval": "lm-eval",
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "openai": "openai",
    "polars": "polars",
    "pyarrow": "pyarrow",
    "scipy": "scipy",
    "seaborn": "seaborn",
    "sentence_transformers": "sentence-transformers",
    "sklearn": "scikit-learn",
    "snakemake": "snakemake",
    "tabulate": "tabulate",
    "torch": "torch",
    "tqdm": "tqdm",
    "transformers": "transformers",
    "trl": "trl",
    "umap": "umap-learn",
    "vllm": "vllm",
    "yaml": "pyyaml",
}


def env_name(name_or_backend: str) -> str:
    """The env of a stage (``train``, ``analysis``), an env by name, or a backend's env."""
    if name_or_backend in BACKEND_ENVS:
        return BACKEND_ENVS[name_or_backend]
    if name_or_backend in ENV_NAMES:
        return name_or_backend
    raise ValueError(
        f"no conda env for {name_or_backend!r}: an env ({', '.join(ENV_NAMES)}) "
        f"or a backend ({', '.join(BACKEND_ENVS)})"
    )


def conda_env(name_or_backend: str) -> str:
    """A rule's ``conda:`` path, as written in rules/*.smk (relative to the rule file):
    ``conda_env("train")``, ``conda_env(BACKENDS["judge"].env)`` (value_drifts.core.study).

    Also sets ``$VALUE_DRIFTS_ROOT`` for the env files' pip section (Snakemake creates the
    envs from the process that evaluates the rules).
    """
    export_project_root()
    return f"../envs/{env_name(name_or_backend)}.yaml"


def export_project_root(environ: dict[str, str] | None = None) -> None:
    """Point ``$VALUE_DRIFTS_ROOT`` at this checkout (the env files install it from there)."""
    (os.environ if environ is None else environ)[ROOT_VARIABLE] = str(PROJECT_ROOT)


# ---- reading env files --------------------------------------------------------------------

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._\-]*)==(?P<version>[0-9][A-Za-z0-9._+\-]*)$")
ROOT_REFERENCE = "${" + ROOT_VARIABLE + "}"


def normalise(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: Sequence[str]) -> dict[str, str]:
    """{distribution: version} of the ``name==version`` lines (comments and options skipped)."""
    found = {}
    for line in lines:
        match = PIN.match(line.split("#")[0].strip())
        if match:
            found[normalise(match["name"])] = match["version"]
    return found


def read_pins(path: str | Path) -> dict[str, str]:
    """The pins of a requirements or constraints file."""
    return pins(Path(path).read_text().splitlines())


@dataclass(frozen=True)
class EnvFile:
    """One envs/<name>.yaml: its conda packages and its pip section, taken apart."""

    name: str
    path: Path
    conda: tuple[str, ...]
    pip: tuple[str, ...]

    @property
    def pins(self) -> dict[str, str]:
        """{distribution: version} pinned in the pip section."""
        return pins(self.pip)

    @property
    def constraints(self) -> list[Path]:
        """The ``-c`` files, with $VALUE_DRIFTS_ROOT as this checkout."""
        return [
            Path(line.split(None, 1)[1].replace(ROOT_REFERENCE, str(PROJECT_ROOT)))
            for line in self.pip
            if line.startswith("-c ")
        ]

    @property
    def extras(self) -> list[str]:
        """The project's extras it installs (``-e ${VALUE_DRIFTS_ROOT}[extra]``)."""
        project = re.compile(re.escape(f"-e {ROOT_REFERENCE}") + r"(?:\[(?P<extras>[^\]]*)\])?")
        found = []
        for line in self.pip:
            match = project.fullmatch(line)
            if match:
                found += [e.strip() for e in (match["extras"] or "").split(",") if e.strip()]
        return found

    @property
    def other_lines(self) -> list[str]:
        """pip lines that are neither pins, ``-c`` nor the project (should be none)."""
        return [
            line
            for line in self.pip
            if not PIN.match(line) and not line.startswith("-c ")
            and not line.startswith(f"-e {ROOT_REFERENCE}")
        ]


def read_env(name: str, envs_dir: Path = ENVS_DIR) -> EnvFile:
    """Parse envs/<name>.yaml."""
    import yaml

    path = envs_dir / f"{name}.yaml"
    spec = yaml.safe_load(path.read_text())
    conda = tuple(d for d in spec["dependencies"] if isinstance(d, str))
    sections = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d]
    if len(sections) != 1:
        raise ValueError(f"{path}: expected one pip section, found {len(sections)}")
    return EnvFile(name, path, conda, tuple(str(line).strip() for line in sections[0]))


def project_dependencies(pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """{"": core requirements, extra: its requirements} from pyproject.toml, self-references
    (``value-drifts[a,b]``) expanded."""
    import tomllib

    project = tomllib.loads(pyproject.read_text())["project"]
    groups = {"": list(project["dependencies"]), **project.get("optional-dependencies", {})}

    def expand(extra: str) -> list[str]:
        out = []
        for requirement in groups[extra]:
            match = re.fullmatch(r"value-drifts\[(?P<extras>[^\]]+)\]", requirement.strip())
            if match:
                for inner in match["extras"].split(","):
                    out += expand(inner.strip())
            else:
                out.append(requirement)
        return out

    return {extra: expand(extra) for extra in groups}


# ---- resolving (make check-envs) ------------------------------------------------------------

# pip settings of this machine left out of the check unless --use-pip-config: the check
# resolves what a cluster's conda pip gets from the package registry (CUDA torch builds
# from PyPI), not local wheel directories or caps.
LOCAL_PIP_VARIABLES = ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT",
                       "PIP_NO_INDEX", "PIP_REQUIRE_VIRTUALENV")
NOISE = re.compile(r"is ignored: it is neither a file nor a directory|^\s*$")


@dataclass
class Resolution:
    """What pip's resolver said about one env."""

    env: str
    ok: bool
    seconds: float
    installed: dict[str, str]
    problems: list[str]
    output: str


def pip_environment(use_pip_config: bool) -> dict[str, str]:
    """The environment pip runs in: this one, with the project root set and, unless asked,
    without this machine's pip configuration."""
    environ = dict(os.environ)
    export_project_root(environ)
    environ["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if not use_pip_config:
        environ["PIP_CONFIG_FILE"] = os.devnull
        for variable in LOCAL_PIP_VARIABLES:
            environ.pop(variable, None)
    return environ


def conflict_lines(output: str) -> list[str]:
    """The lines of pip's error output that name what conflicts or cannot be found."""
    lines = output.splitlines()
    problems = []
    for index, line in enumerate(lines):
        if line.startswith("ERROR:") and "ResolutionImpossible" not in line:
            problems.append(line)
        if "The conflict is caused by:" in line:
            for following in lines[index + 1:]:
                if not following.startswith(" "):
                    break
                if following.strip():
                    problems.append(following.rstrip())
    return problems


def resolve(env: EnvFile, python: Path, workdir: Path, environ: Mapping[str, str]) -> Resolution:
    """pip install --dry-run of the env's pip section, as conda would run it (from a
    requirements file), in the venv of ``python``."""
    requirements = workdir / f"{env.name}.requirements.txt"
    requirements.write_text("\n".join(env.pip) + "\n")
    report = workdir / f"{env.name}.report.json"
    start = time.monotonic()
    result = subprocess.run(
        # not --quiet: pip names the conflicting requirements at its info level
        [str(python), "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "--no-build-isolation", "--progress-bar", "off", "--report", str(report),
         "-r", str(requirements)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(environ),
        cwd=env.path.parent,
    )
    seconds = time.monotonic() - start
    output = "\n".join(line for line in result.stdout.splitlines() if not NOISE.search(line))
    installed = {}
    if result.returncode == 0 and report.exists():
        for item in json.loads(report.read_text())["install"]:
            installed[normalise(item["metadata"]["name"])] = item["metadata"]["version"]
    problems = conflict_lines(output) if result.returncode else []
    if result.returncode and not problems:
        problems = output.splitlines()[-15:]
    return Resolution(env.name, result.returncode == 0, seconds, installed, problems, output)


def pinned_python(env: EnvFile) -> str | None:
    """The ``python==X.Y.Z`` of the env's conda packages, if pinned."""
    for package in env.conda:
        match = re.fullmatch(r"python==(\d+\.\d+)(\.\d+)?", package)
        if match:
            return match[1]
    return None


# Installed in the throwaway venv so that the project's and sdists' metadata build there
# (--no-build-isolation) instead of in one fresh build environment per env and sdist.
BUILD_REQUIREMENTS = ("setuptools>=68", "wheel")


def make_venv(python: str, pip_spec: str | None, path: Path, environ: Mapping[str, str]) -> Path:
    """A throwaway venv of ``python`` with the envs' pip version and the build backend;
    its interpreter."""
    subprocess.run([python, "-m", "venv", str(path)], check=True)
    interpreter = path / "bin" / "python"
    subprocess.run(
        [str(interpreter), "-m", "pip", "install", "--quiet", pip_spec or "pip",
         *BUILD_REQUIREMENTS],
        check=True, env=dict(environ), capture_output=True, text=True,
    )
    return interpreter


def summary(resolution: Resolution, env: EnvFile) -> str:
    """One env's result in a few lines."""
    if not resolution.ok:
        return "\n".join(
            [f"{env.name}: does not resolve ({resolution.seconds:.0f} s)"]
            + [f"  {line}" for line in resolution.problems]
        )
    key = ", ".join(
        f"{name} {resolution.installed[name]}"
        for name in ("torch", "transformers", "numpy", "vllm", "deepspeed", "openai")
        if name in resolution.installed
    )
    return (f"{env.name}: resolves, {len(resolution.installed)} distributions "
            f"({resolution.seconds:.0f} s)\n  {key}")


def check(names: Sequence[str], python: str, use_pip_config: bool = False,
          jobs: int = 5) -> int:
    """Resolve each env's pip section; print one summary per env; 1 if any fails."""
    envs = [read_env(name) for name in names]
    versions = {pinned_python(env) for env in envs} - {None}
    actual = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    if versions and versions != {actual}:
        print(f"check-envs: the envs pin Python {sorted(versions)}, {python} is {actual}")
        return 1
    pip_specs = {spec for env in envs for spec in env.conda if spec.startswith("pip==")}
    environ = pip_environment(use_pip_config)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="check-envs-") as tmp:
        workdir = Path(tmp)
        interpreter = make_venv(python, min(pip_specs) if len(pip_specs) == 1 else None,
                                workdir / "venv", environ)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(lambda env: resolve(env, interpreter, workdir, environ), envs))
    failed = 0
    for env, resolution in zip(envs, results, strict=True):
        print(summary(resolution, env), flush=True)
        failed += not resolution.ok
    print(f"check-envs: {len(envs) - failed} of {len(envs)} envs resolve "
          f"({time.monotonic() - start:.0f} s)")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="value-drifts check-envs",
        description="Resolve each conda env's pip requirements with pip's resolver (dry run "
        "against the package registry, nothing installed).",
    )
    parser.add_argument("envs", nargs="*", metavar="ENV",
                        help=f"envs to check, of {', '.join(ENV_NAMES)} (default: all)")
    parser.add_argument("--python", default="python3.11",
                        help="interpreter of the envs' Python version (default python3.11)")
    parser.add_argument("--use-pip-config", action="store_true",
                        help="keep this machine's pip configuration (indexes, find-links, "
                        "constraints) instead of the package registry alone")
    parser.add_argument("--jobs", type=int, default=len(ENV_NAMES),
                        help="envs resolved at once (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.envs) - set(ENV_NAMES))
    if unknown:
        parser.error(f"no such env: {', '.join(unknown)} (envs: {', '.join(ENV_NAMES)})")
    return check(args.envs or list(ENV_NAMES), args.python, args.use_pip_config, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
