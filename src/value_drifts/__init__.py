"""value-drifts: trace how a language model's values drift during post-training.

The package is grouped by stage, each layer importing only the layers below it (an
import-linter contract in ``pyproject.toml`` holds this; ``make lint`` checks it):

- ``commands``: the ``value-drifts`` command line (trace, value-gap, cost-plan, check-envs).
- ``analysis``: values, drift magnitude and time, tables, figures, downstream scores,
  dataset stances.
- ``judge``, ``generation``, ``training`` (independent of each other): stance readings
  from a judge's log-probabilities and the judge's health and agreement; answers sampled
  from a checkpoint; SFT and preference optimisation through TRL.
- ``data``: SFT and preference data (hub, synthetic, your own TRL files), V-PRISM, the
  value-gap set and its teacher, base models.
- ``backends``: the OpenAI-protocol client and the persistent request cache.
- ``core``: the validated config and the study built from it, results paths, recorded
  settings, checkpoint folders, questions, cluster requests and conda envs.
"""
