"""The `cnnrun` command line: one small function per command, grouped in modules by what they are about.

`common` holds the Typer apps and the option types; each other module registers its commands on import.
The top of the tower: it may import any package; nothing imports it.
"""

import sys

from cnnrun.cli import core, explain, manage, profile, sweep, teach  # noqa: F401  (registers the commands)
from cnnrun.cli.common import app, debug_on
from cnnrun.errors import UserError


def main() -> None:
    """Entry point of the `cnnrun` console script."""
    try:
        app()
    except UserError as e:
        if debug_on():
            raise
        from cnnrun.cli.render import show_error

        show_error(e)
        sys.exit(2)

