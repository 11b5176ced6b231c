"""Tests of the package's functions, one folder per package of value_drifts."""
