"""The ``value-drifts`` command line and its subcommands."""
