"""The base of every config section."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors, so a typo never passes silently; defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
