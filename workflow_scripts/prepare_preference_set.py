from value_drifts.io import logged

with logged(snakemake.log[0]):
    raise NotImplementedError(
        "preference-set preparation arrives with the preference-optimisation issue"
    )
