from value_drifts.io import logged

with logged(snakemake.log[0]):
    raise NotImplementedError("PPO/DPO/SimPO training arrives with the preference-optimisation issue")
