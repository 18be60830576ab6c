"""The one error type for a user's mistake (config, path, data), its place, fault and remedy kept as data."""

import difflib
from collections.abc import Iterable

PATH_STARTS = (".", "[")  # a place that goes on a key path: compile.optimizer + .learning_rate, layers + [0]


class UserError(Exception):
    """A mistake the user can fix: the CLI writes it in one line, `error: WHERE: WHAT; FIX`, and exits with code 2.

    Args:
        what: what is wrong (`no kernel called 'blur'`), or the whole line as older call sites write it.
        where: the file, key, option or path it is about (`--kernel`, `config.yaml: train.epochs`).
        fix: what would be right (`choose from vertical, horizontal, …`).

    `str(e)` is the whole line without `error:`; `e.at(place)` is the same mistake placed inside `place`.

    Example:
    >>> str(UserError("must be at least 1, got 0", where="--stride"))
    '--stride: must be at least 1, got 0'
    >>> str(UserError("got 0", where="--stride", fix="give 1 or more").at("kernel-demo"))
    'kernel-demo: --stride: got 0; give 1 or more'
    """

    def __init__(self, what: str, *, where: str = "", fix: str = "") -> None:
        self.what, self.where, self.fix = what, where, fix
        super().__init__(self.line())

    def line(self) -> str:
        """`WHERE: WHAT; FIX`, leaving out the parts that are empty."""
        return (f"{self.where}: " if self.where else "") + self.what + (f"; {self.fix}" if self.fix else "")

    def __str__(self) -> str:
        return self.line()

    def at(self, where: str, replacing: str = "") -> "UserError":
        """The same mistake placed inside `where`: `where` goes before its own place.

        With `replacing`, that leading part of its place is dropped first and what remained goes on from `where`:
        `compile.optimizer.learning_rate` at `train.phases.0.optimizer`, replacing `compile.optimizer`, is
        `train.phases.0.optimizer.learning_rate`. A mistake written as one whole line (no `where`) has its place
        read off the start of the line for `replacing`. Already placed at `where`, it stays where it is.
        """
        place, what = self.where, self.what
        if replacing and not place and what.startswith(replacing):
            rest = what[len(replacing):]
            if rest.startswith(": "):
                place, what = replacing, rest[2:]
            elif rest.startswith(PATH_STARTS) and ": " in rest:
                tail, _, what = rest.partition(": ")
                place = replacing + tail
        already = place if place else what
        if not replacing and (already == where or already.startswith(f"{where}: ")):
            return type(self)(self.what, where=self.where, fix=self.fix)
        if replacing and (place == replacing or place.startswith(replacing + ": ")
                          or place.startswith(tuple(replacing + s for s in PATH_STARTS))):
            place = place[len(replacing):].removeprefix(": ")
        new = where if not place else where + place if place.startswith(PATH_STARTS) else f"{where}: {place}"
        return type(self)(what, where=new, fix=self.fix)


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
