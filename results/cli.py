"""``python -m results``: the whole comparison, or its report redrawn from files.

- ``python -m results all --profile quick`` runs the stress study (both services and the
  echo baseline on every middleware) and the speedup study (the filter on 1/2/3 nodes,
  each node held to a fraction of one core, and the secondary variant with 5 ms of
  simulated work) into one directory, then writes its figures and ``REPORT.md``.
  ``--profile standard`` repeats the same points three times (error bars, about 15-20
  minutes); ``--repeat`` and ``--duration`` override any profile's. ``--profile full``
  gives report quality (both services, fixed work as well as timed runs, three
  repeats; about 100 minutes on 2 cores) and by default writes into ``results/``.
- ``python -m results report [DIR]`` redraws the figures and ``REPORT.md`` of ``DIR``
  from its CSV and JSON files, and prints the summary tables; nothing is measured.
- ``python -m results compare RUN_A RUN_B`` prints how each stress row of RUN_B differs
  from RUN_A (see :mod:`results.compare`).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from results.compare import DEFAULT_NOISE_PCT, run_compare
from results.files import ResultsFileError, csv_path, default_out
from results.report import build_report, print_headline, print_summary

#: The quick profile: one repeat of short runs, about 5 minutes.
QUICK = {
    "stress": ["--clients", "1,4", "--duration", "3", "--warmup", "1", "--repeat", "1"],
    "speedup": [
        "--service", "filter", "--nodes", "1,2,3", "--node-cpu", "auto", "--work-ms", "0,5",
        "--duration", "2", "--warmup", "0.5", "--repeat", "1",
    ],
    "calibrate": "0.5",
}  # fmt: skip


def with_option(argv: list[str], flag: str, value: float) -> list[str]:
    """``argv`` with the value after ``flag`` replaced by ``value``."""
    changed = list(argv)
    changed[changed.index(flag) + 1] = f"{value:g}"
    return changed


def repeated(profile: dict[str, Any], repeat: int, calibrate: str) -> dict[str, Any]:
    """``profile`` with every study run ``repeat`` times."""
    studies = ("stress", "speedup")
    return {
        **{study: with_option(profile[study], "--repeat", repeat) for study in studies},
        "calibrate": calibrate,
    }


#: Each profile as the options it passes to ``python -m stress`` and ``python -m speedup``.
PROFILES = {
    "quick": QUICK,
    # The quick profile's runs three times: error bars in about 15 minutes on 2 quiet
    # cores (23 measured with 4-second runs while other work took 1-1.7 of them).
    "standard": repeated(QUICK, 3, calibrate="1"),
    "full": {
        "stress": ["--clients", "1,2,4,8", "--duration", "10", "--warmup", "2", "--repeat", "3"],
        "speedup": [
            "--service", "all", "--nodes", "1,2,3", "--node-cpu", "auto", "--work-ms", "0,5",
            "--tasks", "0,auto", "--duration", "10", "--warmup", "2", "--repeat", "3",
        ],
        "calibrate": "2",
    },
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m results``."""
    parser = argparse.ArgumentParser(
        prog="python -m results",
        description="Run the whole comparison, or redraw a report from its files.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    everything = commands.add_parser(
        "all",
        help="run the stress and speedup studies, then write the report",
        description="Run the stress study (insult and filter services plus the echo "
        "baseline, every middleware) and the speedup study (1, 2 and 3 nodes, each held to "
        "a fraction of one core; the filter in the quick profile, both services in the "
        "full one) into one directory, then draw the figures and write REPORT.md there.",
    )
    everything.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="quick",
        help="quick: one repeat, about 5 minutes on 2 cores; standard: three repeats with "
        "error bars, about 15-20 minutes; full: report quality, about 100 minutes "
        "(default: quick)",
    )
    everything.add_argument(
        "--repeat",
        type=_positive_int,
        help="repetitions of every run in both studies, instead of the profile's",
    )
    everything.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help="seconds measured per run in both studies, instead of the profile's",
    )
    everything.add_argument(
        "--out",
        type=Path,
        help="directory for the data and the report (default: results/runs/all-<UTC time> "
        "for quick, results for full)",
    )
    everything.add_argument(
        "--middleware", default="all", help="middlewares to compare (default: all)"
    )
    report = commands.add_parser(
        "report",
        help="redraw the figures and REPORT.md from a directory's files",
        description="Redraw the figures and REPORT.md from the stress/speedup CSV and JSON "
        "files of a directory, and print the summary tables. Nothing is measured.",
    )
    report.add_argument(
        "directory",
        type=Path,
        nargs="?",
        default=Path("results"),
        help="directory holding stress.csv/json and/or speedup.csv/json (default: results)",
    )
    compare = commands.add_parser(
        "compare",
        help="compare two runs row by row: ops/s, p99 and CPU per operation",
        description="Match the stress rows of two result directories and print, per row, "
        "the change in ops/s, p99 and CPU per operation from RUN_A to RUN_B, with a "
        "verdict on the throughput: better, worse or within noise. The noise band is the "
        "larger spread of the two runs' repeats, or "
        f"{DEFAULT_NOISE_PCT:g}% when either has one repeat.",
    )
    compare.add_argument("run_a", type=Path, metavar="RUN_A", help="the reference run's directory")
    compare.add_argument("run_b", type=Path, metavar="RUN_B", help="the run to judge against it")
    compare.add_argument(
        "--fail-on-regression",
        type=float,
        metavar="PCT",
        help="exit 1 if some row's throughput fell by more than PCT percent and beyond "
        "the noise (default: always exit 0 once both runs were read)",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def study_arguments(
    profile: str, repeat: int | None = None, duration: float | None = None
) -> dict[str, list[str]]:
    """The options of each study in ``profile``, with ``repeat`` and ``duration`` put in
    place of the profile's own when given."""
    options = PROFILES[profile]
    overrides = {"--repeat": repeat, "--duration": duration}
    studies = {}
    for study in ("stress", "speedup"):
        argv = options[study]
        for flag, value in overrides.items():
            if value is not None:
                argv = with_option(argv, flag, value)
        studies[study] = argv
    return studies


def run_all(
    profile: str,
    out: Path,
    middleware: str,
    repeat: int | None = None,
    duration: float | None = None,
) -> int:
    """Run both studies of ``profile`` into ``out`` and write the report; exit status.

    Each study runs as its own ``python -m`` process, as a user would run it: this
    package only reads and draws results, and never imports the measuring code.
    """
    options = PROFILES[profile]
    argv_of = study_arguments(profile, repeat, duration)
    out = out or (Path("results") if profile == "full" else default_out("all"))
    common = ["--middleware", middleware, "--out", str(out), "--no-report"]
    status = 0
    studies = (
        ("stress", ["--service", "all", "--baseline", "--calibrate", options["calibrate"]]
         + argv_of["stress"]),
        ("speedup", ["--calibrate", "0"] + argv_of["speedup"]),
    )  # fmt: skip
    for study, argv in studies:
        code = subprocess.run([sys.executable, "-m", study, *argv, *common], check=False).returncode
        if code in (2, 130, -signal.SIGINT):  # bad setup or Ctrl-C: stop here
            return 130 if code == -signal.SIGINT else code
        status = max(status, code)
    # Each study printed its own table already: only the report's opening here.
    print_headline(out)
    print(f"\nreport: {build_report(out)}")
    return status


def redraw(directory: Path) -> int:
    """Redraw the report of ``directory``; exit status."""
    if not any(csv_path(directory, s).exists() for s in ("stress", "speedup")):
        print(
            f"error: {directory} has no stress.csv or speedup.csv; run python -m stress "
            "or python -m speedup with --out pointing there first",
            file=sys.stderr,
        )
        return 2
    try:
        print_summary(directory)
        print(f"\nreport: {build_report(directory)}")
    except ResultsFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m results``."""
    args = build_parser().parse_args(argv)
    if args.command == "all":
        sys.exit(run_all(args.profile, args.out, args.middleware, args.repeat, args.duration))
    if args.command == "compare":
        sys.exit(run_compare(args.run_a, args.run_b, args.fail_on_regression))
    sys.exit(redraw(args.directory))
