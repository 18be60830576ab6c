"""What the commands found, shown to a person: a user's mistake as the one line `error: WHERE: WHAT; FIX`."""

from rich.text import Text

from cnnrun.errors import UserError
from cnnrun.report import error_console


def error_text(error: UserError) -> Text:
    """`error: WHERE: WHAT; FIX` as one line of Rich text (the place in bold); its plain text is `error: ` + str."""
    text = Text("error:", style="bold red")
    text.append(" ")
    if error.where:
        text.append(error.where, style="bold")
        text.append(": ")
    text.append(error.what)
    if error.fix:
        text.append(f"; {error.fix}")
    return text


def show_error(error: UserError) -> None:
    """Write a user's mistake to standard error in one line, never wrapped."""
    error_console.print(error_text(error), highlight=False, emoji=False, soft_wrap=True)
