"""``--guarantee`` on the studies: one guarantee, a list or both, each run recorded."""

from __future__ import annotations

import argparse

import pytest

from middlewares.settings import Settings
from speedup import cli as speedup_cli
from stress import cli as stress_cli
from stress.options import guarantee_list


def test_guarantee_lists_are_parsed_and_bad_ones_refused():
    assert guarantee_list("at-most-once") == ["at-most-once"]
    assert guarantee_list("both") == ["at-least-once", "at-most-once"]
    assert guarantee_list("at-most-once, at-least-once,at-most-once") == [
        "at-most-once",
        "at-least-once",
    ]
    with pytest.raises(argparse.ArgumentTypeError, match="at-least-once, at-most-once"):
        guarantee_list("exactly-once")


def _stress_cells(*flags: str, settings: Settings | None = None):
    args = stress_cli.build_parser().parse_args(["--service", "echo", "--clients", "1,4", *flags])
    return stress_cli.plan_cells(args, settings or Settings(), ["stub"], [1, 4])


def test_stress_runs_each_configuration_under_each_guarantee_back_to_back():
    cells = _stress_cells("--guarantee", "both", "--repeat", "1")
    assert [(c.plan.clients, c.settings.guarantee) for c in cells] == [
        (1, "at-least-once"),
        (1, "at-most-once"),
        (4, "at-least-once"),
        (4, "at-most-once"),
    ]


def test_stress_without_the_flag_runs_under_the_settings_guarantee():
    cells = _stress_cells("--repeat", "1", settings=Settings(guarantee="at-most-once"))
    assert {c.settings.guarantee for c in cells} == {"at-most-once"}
    assert len(cells) == 2


def test_stress_refuses_an_unknown_guarantee(capsys):
    with pytest.raises(SystemExit):
        stress_cli.build_parser().parse_args(["--guarantee", "maybe-once"])
    assert "maybe-once" in capsys.readouterr().err


def test_speedup_pairs_every_n_with_one_node_under_the_same_guarantee():
    parser = speedup_cli.build_parser()
    args = parser.parse_args(
        ["--service", "filter", "--nodes", "1,2", "--guarantee", "at-most-once,at-least-once"]
    )
    args.external_nodes = False
    caps = speedup_cli.CpuCaps(0.0, 0.0, "auto")
    cells = speedup_cli.plan_cells(args, Settings(), ["stub"], ["filter"], caps)
    pairs = [(c.plan.repeat, c.settings.guarantee, c.plan.nodes) for c in cells]
    assert pairs[:4] == [
        (1, "at-most-once", 1),
        (1, "at-most-once", 2),
        (1, "at-least-once", 1),
        (1, "at-least-once", 2),
    ]
