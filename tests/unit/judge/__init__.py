"""Tests of value_drifts.judge."""
