"""The parser root of ``llmmeter``: one parser over every command, and the dispatch.

Each command module adds its own subcommands (``add_*_parser``) and names the function that
runs it (``handler``); this module builds the parser from them, parses the argument list and
calls the handler. It is the one module of the command line that imports the commands; none
of them imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llmmeter._package import __version__
from llmmeter._scrub import scrub

from .common import Handler, Parser, UsageError, Writer, exit_codes
from .demo import add_demo_parser
from .evaluate import add_evaluate_parser
from .policy import add_policy_parsers
from .prices import add_prices_parser
from .report import add_report_parser
from .status import add_status_parsers


def _build_parser() -> Parser:
    parser = Parser(
        prog="llmmeter",
        description=(
            "See what llmmeter does (demo), summarize exported spans by model, task, rule or\n"
            "service (report), look up and compare model prices, check or explain a\n"
            "routing policy file, see how its rules do across the fleet and promote them\n"
            "(policy status, promote), and test a cheaper model on a dataset (evaluate).\n"
            "Every command that prints data takes --json; 'llmmeter COMMAND --help' says more."
        ),
        epilog=exit_codes(
            (0, "done"),
            (
                1,
                "done, with a finding its --help names (an unpriced model, a target\n"
                "not met, a rule to change)",
            ),
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"llmmeter {__version__}")
    parser.set_defaults(handler=_help(parser))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_prices_parser(commands)
    policy, subcommands = add_policy_parsers(commands)  # `policy check` and `explain`,
    add_status_parsers(subcommands)  # then `policy status` and `policy promote`
    policy.set_defaults(handler=_help(policy))
    add_demo_parser(commands)
    add_report_parser(commands)
    add_evaluate_parser(commands)
    return parser


def _help(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command group given no command: its help, as ``--help`` prints it."""

    def show(args: argparse.Namespace, out: Writer) -> int:
        out(parser.format_help().rstrip("\n"))
        return 0

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the command it names and return its exit code (0 ok, 1 unpriced,
    2 usage); :func:`llmmeter._cli.main` is this, imported when a command runs.

    Mistakes are one ``llmmeter: error:`` line on stderr, never a traceback or usage dump, so
    scripts can show them as they are.
    """
    parser = _build_parser()
    try:
        try:
            args, extras = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help and --version print, then exit through argparse
            return exc.code if isinstance(exc.code, int) else 0
        # argparse stops filling a list of bare words (MODELs, FILEs) at the first option;
        # bare words after options belong to that list too.
        listed = next((name for name in ("models", "files") if hasattr(args, name)), None)
        unknown = [arg for arg in extras if (arg.startswith("-") and arg != "-") or not listed]
        if unknown:
            raise UsageError(
                f"unrecognized arguments: {' '.join(unknown)} (see '{args.prog} --help')"
            )
        if listed:
            setattr(args, listed, [*getattr(args, listed), *extras])
        code: int = args.handler(args, print)
    except UsageError as exc:
        message = " ".join(scrub(str(exc)).split())  # may quote a URL or a server's error
        print(f"llmmeter: error: {message}", file=sys.stderr)
        return 2
    return code
