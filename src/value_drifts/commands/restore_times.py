"""``value-drifts restore-times``: give a results tree copied without its file times (``cp -r``)
the times recorded at the end of its last run, so Snakemake sees it as current
(``value_drifts.core.file_times``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from value_drifts.core.file_times import restore_times
from value_drifts.core.layout import RESULTS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="value-drifts restore-times", description=__doc__)
    parser.add_argument("--results", default=RESULTS, help="the results folder (default results)")
    args = parser.parse_args(argv)
    changed = restore_times(args.results)
    print(f"{args.results}: {changed} file(s) given back their recorded times")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
