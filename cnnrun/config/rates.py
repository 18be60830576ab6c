"""`compile.rate_multipliers` as a config writes it: regular expressions of variable paths and their multipliers.

Checking a value needs neither TensorFlow nor Keras; `cnnrun.model.rates` applies it to a model's optimizer and
says which patterns match nothing.

>>> check_multipliers({"beta": 64})
{'beta': 64.0}
"""

import re
from typing import Any

from cnnrun.errors import UserError

WHERE = "compile.rate_multipliers"


def check_multipliers(value: Any) -> Any:
    """`compile.rate_multipliers` as written, or a UserError: a mapping of regular expressions to numbers > 0."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise UserError(f"{WHERE}: a multiplier per pattern of variable paths ({{beta: 64}}), got {value!r}")
    for pattern, multiplier in value.items():
        try:
            re.compile(str(pattern))
        except re.error as e:
            raise UserError(f"{WHERE}: '{pattern}' is not a regular expression ({e})") from e
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or not multiplier > 0:
            raise UserError(f"{WHERE}.{pattern}: a multiplier is a number > 0, got {multiplier!r}")
    return {str(pattern): float(multiplier) for pattern, multiplier in value.items()}


