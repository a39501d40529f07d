"""Issue 25 (reliability, round two): every bad input is named before any work, in one line."""

from __future__ import annotations

import pytest

from pplaw.cli.main import COMMANDS, main
from pplaw.exceptions import ConfigError


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_help(command, capsys):
    """Item 1: a bare % in a help text crashed `pplaw score --help` (or printed the action's dict instead)."""
    try:
        rc = main([command, "--help"])
    except SystemExit as stop:
        rc = stop.code
    out = capsys.readouterr()
    assert rc in (0, None), out.err
    assert "usage" in out.out.lower() or command == "run"
    assert "option_strings" not in out.out
    text = " ".join(out.out.split())
    if command == "score":
        assert "k % tasks == i" in text
    if command == "train":
        assert "~20% slower" in text
