"""Tests of value_drifts.core."""
