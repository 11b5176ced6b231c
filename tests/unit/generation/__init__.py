"""Tests of value_drifts.generation."""
