"""The one error type for a user's mistake (config, path, data)."""

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake the user can fix: the CLI prints the message in one line and exits with code 2.

    The message names the file, key or path and says what would be right.
    """


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ` (did you mean 'x'?)` for the closest choice, or an empty string.

    Example:
    >>> did_you_mean("Conv2d", ["Conv2D", "Dense"])
    " (did you mean 'Conv2D'?)"
    """
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    # abbreviations by initials: lr -> learning_rate
    close = close or [c for c in lowered if "_" in c and "".join(p[:1] for p in c.split("_")) == word.lower()]
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""
