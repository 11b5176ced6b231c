"""Tests of value_drifts.commands."""
