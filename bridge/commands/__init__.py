"""What the subcommands share: where the config is, and ``--help`` texts with a description and examples.

``-c``/``--config`` is optional everywhere: it defaults to ``$HUBBRIDGE_CONFIG``, then to
``/etc/hubbridge/hubbridge.yaml`` (what the systemd unit uses), so on an installed machine ``hubbridge status``
needs no arguments.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from typing import Any

DEFAULT_CONFIG = "/etc/hubbridge/hubbridge.yaml"
CONFIG_HELP = f"config file (YAML); default: $HUBBRIDGE_CONFIG, then {DEFAULT_CONFIG}"


def config_path(value: str | None) -> str:
    """The config file to use: ``-c`` if given, else ``$HUBBRIDGE_CONFIG``, else :data:`DEFAULT_CONFIG`."""
    return value or os.environ.get("HUBBRIDGE_CONFIG") or DEFAULT_CONFIG


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=None, help=CONFIG_HELP)


def subcommand(
    sub: Any, name: str, summary: str, description: str, examples: list[tuple[str, str]]
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` has a description and examples (command, what it does)."""
    epilog = "examples:\n" + "\n".join(f"  {cmd}\n      {what}" for cmd, what in examples)
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(" ".join(description.split()), 100),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser
