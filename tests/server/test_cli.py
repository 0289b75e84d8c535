"""The `soundscape` command line: help with defaults, a version, one-line errors."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from server.cli import build_parser, main


def subcommands(
    parser: argparse.ArgumentParser | None = None,
) -> dict[str, argparse.ArgumentParser]:
    """Every leaf command ('gallery build' for nested ones)."""
    parser = parser or build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for name, command in sub.choices.items():
        nested = any(isinstance(a, argparse._SubParsersAction) for a in command._actions)
        leaves = subcommands(command) if nested else {"": command}
        out |= {f"{name} {leaf}".strip(): p for leaf, p in leaves.items()}
    return out


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_option_has_help_and_shows_its_default(name):
    command = subcommands()[name]
    formatter = command._get_formatter()
    for action in command._actions:
        if "-h" in action.option_strings:
            continue
        assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        meaningful = action.default not in (None, False, argparse.SUPPRESS, [], {}, "")
        if action.option_strings and meaningful:
            assert "(default: %(default)s)" in formatter._get_help_string(action), action
    assert "(default: " in command.format_help() or name == "import-checkpoint"


def test_version_is_printed():
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("soundscape ")
    assert out.stdout.split()[1][0].isdigit()


def test_a_usage_error_is_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["precompute", "--imagery", "x.tif"])  # required options missing
    assert info.value.code == 2
    assert "required" in capsys.readouterr().err


def test_progress_bars_switch_off_when_not_on_a_terminal(tmp_path, capsys):
    # stderr is captured (not a terminal): the training bar must not draw.
    code = main([
        "train", "--config", "test", "--dataset", "synthetic", "--dataset-args",
        '{"size": 32}', "--workdir", str(tmp_path / "run"), "--steps", "2", "--batch-size", "8",
    ])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "it/s" not in err and "step/s" not in err and "%|" not in err
