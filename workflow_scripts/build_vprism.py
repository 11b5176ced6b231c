from value_drifts.io import logged

with logged(snakemake.log[0]):
    raise NotImplementedError("the V-PRISM construction pipeline arrives with the data issue")
