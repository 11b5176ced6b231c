from pathlib import Path

from value_drifts.core.io import logged
from value_drifts.data.base_model import (
    convert_gguf,
    copy_local_model,
    download_hub_model,
    find_packaged_file,
    set_chat_template,
)

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    output = Path(snakemake.output[0])
    if spec["source"] == "gguf_package":
        gguf = find_packaged_file(spec["package"], spec["gguf_file"], spec.get("pip_spec"))
        print(f"converting {gguf} -> {output}")
        convert_gguf(gguf, output)
    elif spec["source"] == "local":
        copy_local_model(Path(spec["path"]), output)
    else:
        download_hub_model(spec["hub_id"], output, spec.get("revision"))
    # the chat template SFT trains through, named in the config (or the model's own)
    source = set_chat_template(output, snakemake.wildcards.model, spec.get("chat_template"),
                               trained=snakemake.params.trained)
    print("chat template:", source or "the tokenizer's own")

