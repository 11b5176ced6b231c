"""Stance judges: render the judge prompt, ask a backend for first-token log-probabilities."""
