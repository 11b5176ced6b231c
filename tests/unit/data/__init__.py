"""Tests of value_drifts.data."""
