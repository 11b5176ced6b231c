"""The study model every stage asks: config and its schema defaults, the study's grid and
backends, results paths, recorded settings, checkpoint folders, questions, cluster requests
and conda envs. Imports nothing above it."""
