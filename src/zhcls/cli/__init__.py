"""The ``zhcls`` console script. Each subcommand lives in ``zhcls.cli.<name>`` and exposes
``register(subparsers)``; the work itself is a typed function elsewhere in the package that
is also the Python API. Heavy imports (torch, transformers) happen inside the commands, so
``zhcls --help`` is instant.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import logging
import sys

from zhcls._version import __version__
from zhcls.errors import ZhclsError

# Order is the order shown by ``zhcls --help``.
COMMAND_MODULES = (
    "demo", "init_tiny", "pretrain", "train", "evaluate", "predict", "label", "serve", "export",
    "explain", "report", "data_stats", "sweep", "baseline",
)

logger = logging.getLogger("zhcls")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zhcls",
        description="Train, evaluate, distil, explain and serve Chinese text classifiers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"zhcls {__version__}")
    # no abbreviated options: `predict --text` must not silently mean --text-field
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=functools.partial(argparse.ArgumentParser,
                                                               allow_abbrev=False))
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"zhcls.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"zhcls.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def join_option_values(argv: list[str]) -> list[str]:
    """``--section.key -inf`` -> ``--section.key=-inf``: argparse would read a value that
    starts with ``-`` (``-inf``, ``-.5``) as an option of its own."""
    out: list[str] = []
    items = list(argv)
    while items:
        tok = items.pop(0)
        if (tok.startswith("--") and "." in tok and "=" not in tok and items
                and items[0].startswith("-") and not items[0].startswith("--")):
            tok = f"{tok}={items.pop(0)}"
        out.append(tok)
    return out


def unknown_command(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """The error for a first word that is no subcommand, with the closest ones (argparse's
    own "invalid choice" lists all fourteen and suggests none); None when it is one."""
    import difflib

    commands = next((a.choices for a in parser._actions
                     if isinstance(a, argparse._SubParsersAction)), {})
    first = next((a for a in argv if a not in ("-v", "--verbose")), None)
    if first is None or first.startswith("-") or first in commands:
        return None
    close = difflib.get_close_matches(first, list(commands), n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (f"zhcls: unknown command {first!r}{hint} (`zhcls --help` lists the commands: "
            f"{', '.join(commands)})")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = join_option_values(sys.argv[1:] if argv is None else argv)
    message = unknown_command(parser, argv)
    if message is not None:
        print(message, file=sys.stderr)
        return 2
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command is None:
        parser.print_help()
        return 2
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "accepts_overrides", False):
        args.overrides = extra
    try:
        result = args.func(args)
    except ZhclsError as exc:
        logger.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
