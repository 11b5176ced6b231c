"""Training and evaluation data: SFT and preference sets (hub, synthetic, your own TRL
files), V-PRISM questions, the value-gap preference set and its teacher, base models."""
