import numpy as np
import polars as pl

from value_drifts.core.io import logged
from value_drifts.data.value_gap_set import embed, load_encoder

with logged(snakemake.log[0]):
    questions = pl.read_parquet(snakemake.input[0])["question"].to_list()
    vectors = embed(load_encoder(snakemake.params.encoder), questions)
    np.save(snakemake.output[0], vectors)
    print(f"{vectors.shape[0]} questions embedded in {vectors.shape[1]} dimensions")
