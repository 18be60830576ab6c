"""The `${…}` language of configs: a variable, a number, or arithmetic on them, and nothing else.

`vars:` at the top level and `model.vars:` (which wins) name values; a string that is only `${…}` takes the
value's type (`filters: "${base * 2}"` is the number 64), a `${…}` inside a longer string is replaced by its text
(`name: "conv_${base}"`). A var may use other vars, in any order; a circle of vars is an error naming them. No
calls, no attributes, no names but the vars: a config runs no code.

Every step is bounded, so a config can neither hang nor exhaust memory: an expression is at most
`MAX_EXPRESSION_LENGTH` characters, numbers stay within ±`MAX_NUMBER`, and an exponent can only produce such a
number. Dividing by zero or overflowing is a one-line error, as is any other mistake.

Example:
>>> evaluate_expression("base * 2", {"base": 32}, "model.layers[0].Conv2D.filters")
64
"""

import ast
import math
import operator
import re
from typing import Any

from cnnrun.errors import UserError, did_you_mean

_VAR = re.compile(r"\$\{([^}]*)\}")
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow}
# filled in later from the dataset, when the model is built
LATE_VARS = ("num_classes",)
MAX_EXPRESSION_LENGTH = 200
MAX_NUMBER = 10**18  # far beyond any size, rate or count a network takes; int64 holds it


def _check_number(value: Any, text: str, where: str) -> Any:
    """Return `value` if it is a finite number within ±MAX_NUMBER, else raise a UserError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{where}: '${{{text}}}' gives {value!r}, not a number")
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise UserError(f"{where}: '${{{text}}}' is too large (numbers in ${{…}} stay within ±1e18)")
    return value


def _power(base: int | float, exponent: int | float, text: str, where: str) -> int | float:
    """`base ** exponent`, refused before it is computed when the result could not stay within ±MAX_NUMBER."""
    if abs(base) > 1 and exponent > 0 and exponent * math.log2(abs(base)) > math.log2(MAX_NUMBER):
        raise UserError(f"{where}: '${{{text}}}' is too large (numbers in ${{…}} stay within ±1e18)")
    if abs(exponent) > 10_000:  # fractions and 0/±1 bases: still no unbounded work
        raise UserError(f"{where}: '${{{text}}}': exponents stay within ±10000")
    result = base**exponent
    if isinstance(result, complex):
        raise UserError(f"{where}: '${{{text}}}' has no real value (a negative number to a fractional power)")
    return result


def evaluate_expression(text: str, variables: dict[str, Any], where: str) -> Any:
    """Evaluate `name`, a number, or arithmetic on them (`base_filters * 2`), within bounds.

    Args:
        text: what stands between `${` and `}`.
        variables: the values of the config's vars.
        where: the key the expression stands at, shown in errors (e.g. `model.layers[0].Conv2D.filters`).

    Returns:
        A bare name gives its value as it is (a number, a list, a string); arithmetic gives a number.

    Raises:
        UserError: an unknown name, anything but arithmetic, a division by zero, a number beyond ±1e18.
    """
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise UserError(f"{where}: '${{{text[:40]}…}}' is longer than {MAX_EXPRESSION_LENGTH} characters")

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) \
                and not isinstance(node.value, bool):
            return _check_number(node.value, text, where)
        if isinstance(node, ast.Name):
            if node.id not in variables:
                known = ", ".join(sorted(variables)) or "none defined"
                raise UserError(f"{where}: unknown variable '{node.id}'{did_you_mean(node.id, variables)}; "
                                f"vars: {known}")
            return variables[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left = _check_number(walk(node.left), text, where)
            right = _check_number(walk(node.right), text, where)
            if isinstance(node.op, ast.Pow):
                return _check_number(_power(left, right, text, where), text, where)
            return _check_number(_OPERATORS[type(node.op)](left, right), text, where)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -_check_number(walk(node.operand), text, where)
        raise UserError(f"{where}: '${{{text}}}' is not a variable or arithmetic (+ - * / // **) on variables")

    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise UserError(f"{where}: '${{{text}}}' is not a valid expression") from e
    try:
        return walk(tree)
    except ZeroDivisionError as e:
        raise UserError(f"{where}: '${{{text}}}' divides by zero") from e
    except OverflowError as e:
        raise UserError(f"{where}: '${{{text}}}' is too large (numbers in ${{…}} stay within ±1e18)") from e


def substitute(value: Any, variables: dict[str, Any], where: str, keep: tuple[str, ...] = LATE_VARS) -> Any:
    """Replace `${...}` in every string of `value`; a string that is only `${...}` takes the value's type.

    Args:
        value: a YAML value: a mapping, a list, a string or a scalar.
        variables: the values of the config's vars.
        where: the key `value` stands at, shown in errors.
        keep: names left as `${name}` while they are not in `variables` (default: `${num_classes}`, which is
            filled in from the dataset when the model is built).
    """
    if isinstance(value, dict):
        return {k: substitute(v, variables, f"{where}.{k}" if where else str(k), keep) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables, f"{where}[{i}]", keep) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _VAR.fullmatch(value.strip())
    if whole:
        expr = whole.group(1).strip()
        if expr in keep and expr not in variables:
            return value
        return evaluate_expression(expr, variables, where)

    def one(match: re.Match) -> str:
        expr = match.group(1).strip()
        if expr in keep and expr not in variables:
            return match.group(0)
        return str(evaluate_expression(expr, variables, where))

    return _VAR.sub(one, value)


def variable_names(value: Any) -> set[str]:
    """The names the `${…}` of every string in `value` use (a block's parameters, say); unparsable ones are skipped.

    Example:
    >>> sorted(variable_names([{"Conv2D": {"filters": "${f * 2}", "strides": "${stride}"}}]))
    ['f', 'stride']
    """
    if isinstance(value, dict):
        return set().union(*(variable_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(variable_names(v) for v in value))
    names: set[str] = set()
    for expr in _VAR.findall(value) if isinstance(value, str) else ():
        try:
            tree = ast.parse(expr.strip()[:MAX_EXPRESSION_LENGTH], mode="eval")
        except SyntaxError:
            continue
        names.update(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))
    return names


def _circle(names: list[str]) -> str:
    """`vars: a and b refer to each other` for a circle of vars (`names` ends where it began)."""
    if len(names) == 2:
        return f"vars: {names[0]} refers to itself (${{{names[0]}}} in its own value); give it a value"
    members = names[:-1]
    listed = " and ".join([", ".join(members[:-1]), members[-1]]) if len(members) > 2 else " and ".join(members)
    path = f" ({' → '.join(names)})" if len(members) > 2 else ""
    return f"vars: {listed} refer to each other{path}, so none has a value; give one of them a value"


def resolve_variables(variables: dict[str, Any]) -> dict[str, Any]:
    """The vars with the `${…}` of their values substituted: a var may use others (`double: "${base * 2}"`).

    Each var is resolved after the vars it uses; a circle of vars (`a: "${b}"`, `b: "${a}"`) is a one-line
    error naming them, found before anything is evaluated. A value that uses `${num_classes}` (filled in when
    the model is built) is kept as written.

    Example:
    >>> resolve_variables({"base": 16, "double": "${base * 2}"})
    {'base': 16, 'double': 32}
    """
    uses = {name: variable_names(value) & set(variables) for name, value in variables.items()}
    order: list[str] = []
    state: dict[str, str] = {}  # name → "open" while its uses are walked, "done" after
    for start in variables:
        stack = [(start, iter(sorted(uses[start])))]
        path = [start]
        if state.get(start) == "done":
            continue
        state[start] = "open"
        while stack:  # depth first, without recursion: a long chain of vars cannot exhaust Python's stack
            name, pending = stack[-1]
            used = next(pending, None)
            if used is None:
                stack.pop()
                path.pop()
                state[name] = "done"
                order.append(name)
            elif state.get(used) == "open":
                raise UserError(_circle([*path[path.index(used):], used]))
            elif state.get(used) is None:
                state[used] = "open"
                stack.append((used, iter(sorted(uses[used]))))
                path.append(used)
    values = dict(variables)  # each var's value, resolved once the walk's order reaches it
    for name in order:
        value = variables[name]
        late = variable_names(value) & (set(LATE_VARS) - set(variables))
        values[name] = value if late else substitute(value, values, f"vars.{name}")
    return values


def resolve_vars(doc: dict[str, Any]) -> dict[str, Any]:
    """Substitute the top-level `vars:` and `model.vars:` (the latter wins) everywhere but in the vars and blocks.

    A var's value may use other vars (see `resolve_variables`). `model.blocks` keeps its `${…}`: a block's
    parameters take their values from the `args:` of each use, when the model is built (a var of the same name
    is the default).

    Args:
        doc: a config as read from YAML, `base:` merged and `--set` applied.
    """
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    top, local = doc.get("vars") or {}, model.get("vars") or {}
    if not isinstance(top, dict) or not isinstance(local, dict):
        raise UserError("vars: a mapping of names to values, e.g. `vars: {base_filters: 32}`")
    variables = resolve_variables({**top, **local})
    resolved = {}
    for key, value in doc.items():
        if key == "vars":
            resolved[key] = value
        elif key == "model" and isinstance(value, dict):
            resolved[key] = {k: v if k in ("vars", "blocks") else substitute(v, variables, f"model.{k}")
                             for k, v in value.items()}
        else:
            resolved[key] = substitute(value, variables, key)
    return resolved
