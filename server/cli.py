"""The `soundscape` command: one entry point whose subcommands live in each package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# Errors from bad input or the environment (missing files, full disk, unreachable hosts) are
# reported as one line, never a traceback; the exit code follows model.errors.exit_code.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError)


def build_parser() -> argparse.ArgumentParser:
    """Parser with every subcommand registered."""
    from embeddings_store.cli import add_gallery_parser, add_precompute_parser
    from model.cli import add_evaluate_parser, add_import_parser, add_train_parser
    from server.demo import add_demo_parser
    from server.mapcmd import add_map_parser
    from server.serve import add_serve_parser

    parser = argparse.ArgumentParser(
        prog="soundscape", description="PSM soundscape mapping service and tools"
    )
    parser.add_argument("--version", action="version", version=f"soundscape {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_import_parser(sub)
    add_precompute_parser(sub)
    add_gallery_parser(sub)
    add_serve_parser(sub)
    add_map_parser(sub)
    add_demo_parser(sub)
    for command in sub.choices.values():
        command.formatter_class = DefaultsHelpFormatter
        for action in command._actions:  # nested commands (`gallery build`)
            if isinstance(action, argparse._SubParsersAction):
                for leaf in action.choices.values():
                    leaf.formatter_class = DefaultsHelpFormatter
    return parser


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Ends every option's help with its default, where it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        silent = default is None or default is False or default == argparse.SUPPRESS
        if silent or action.required or "%(default)" in text or default in ([], {}, ""):
            return text
        return f"{text} (default: %(default)s)"


def version() -> str:
    """The installed package's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("soundscape-map")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; an error prints `soundscape COMMAND: error: ...` (one line) and exits
    2 for bad input or usage, 1 for a failure at run time."""
    from model.errors import SoundscapeError, exit_code, one_line

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SoundscapeError, *USER_ERRORS) as exc:
        print(f"soundscape {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
