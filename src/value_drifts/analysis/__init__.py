"""From stance readings to numbers: values, drift magnitude and time with intervals,
tables, figures, the paper comparison, downstream scores and dataset stances."""
