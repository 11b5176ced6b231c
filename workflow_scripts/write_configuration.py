from pathlib import Path

import yaml

from value_drifts.core.io import logged

with logged(snakemake.log[0]):
    text = yaml.safe_dump(dict(snakemake.params.config), sort_keys=False)
    Path(snakemake.output[0]).write_text(text)
    print(f"wrote {len(text.splitlines())} lines")
