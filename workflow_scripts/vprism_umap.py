import numpy as np

from value_drifts.core.io import logged
from value_drifts.data.vprism import reduce_dimensions

with logged(snakemake.log[0]):
    settings = dict(snakemake.params.umap)
    embeddings = np.load(snakemake.input[0])
    projection_min_dist = settings.pop("projection_min_dist", 0.1)
    reduced = reduce_dimensions(embeddings, **settings)
    np.save(snakemake.output.reduced, reduced)
    settings.update(n_components=2, min_dist=projection_min_dist)
    np.save(snakemake.output.projection, reduce_dimensions(embeddings, **settings))
    print(f"{embeddings.shape} -> {reduced.shape} (and 2-D for the figure)")
