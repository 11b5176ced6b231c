"""Tests of value_drifts.analysis."""
