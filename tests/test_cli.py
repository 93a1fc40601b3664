"""The ``clipdenoise`` entry point: the explicit subcommand list and its order."""

from __future__ import annotations

from pathlib import Path

import pytest

import clipdenoise.cli
from clipdenoise.cli import SUBCOMMANDS, build_parser, main


def _subcommands(parser) -> list[str]:
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return list(action.choices)


def test_every_subcommand_module_is_listed_once():
    folder = Path(clipdenoise.cli.__file__).parent
    modules = {path.stem for path in folder.glob("*.py") if not path.stem.startswith("_")}
    assert sorted(SUBCOMMANDS) == sorted(modules)
    assert len(set(SUBCOMMANDS)) == len(SUBCOMMANDS)


def test_help_lists_the_subcommands_in_order(capsys):
    assert _subcommands(build_parser()) == list(SUBCOMMANDS)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    positions = [text.index(f"    {name} ") for name in SUBCOMMANDS]
    assert positions == sorted(positions)


def test_no_subcommand_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
