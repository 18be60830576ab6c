"""The `cnnrun` command line: one small function per command, grouped in modules by what they are about.

`common` holds the Typer apps and the option types; each other module registers its commands on import.
The top of the tower: it may import any package; nothing imports it.
"""

import sys

from cnnrun.cli import core, explain, manage, sweep, teach  # noqa: F401  (registers the commands)
from cnnrun.cli.common import app, debug_on
from cnnrun.errors import UserError


def main() -> None:
    """Entry point of the `cnnrun` console script."""
    from rich.markup import escape

    from cnnrun.report import error_console

    try:
        app()
    except UserError as e:
        if debug_on():
            raise
        error_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, emoji=False, soft_wrap=True)
        sys.exit(2)

