"""Tests of value_drifts.training."""
