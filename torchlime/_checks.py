"""Argument checks shared by every layer: one message format for one kind of mistake."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["check_int", "check_choice"]


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int within ``[minimum, maximum]``, or a ValueError naming ``name``.

    Python and numpy integers are accepted; bools, floats and strings are not.

    Args:
        value: what the caller passed.
        name: the argument's name, for the message.
        minimum: the smallest allowed value (None: no bound).
        maximum: the largest allowed value (None: no bound).

    Returns:
        ``int(value)``.

    Raises:
        ValueError: "expected n_samples >= 2, got 1" (or "expected 1 <= k <= 5, got 9").

    Example:
        >>> check_int(3, "n_samples", 2)
        3
        >>> check_int(True, "n_samples", 2)
        Traceback (most recent call last):
        ...
        ValueError: expected n_samples >= 2, got True
    """
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok:
        ok = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        if minimum is not None and maximum is not None:
            want = f"{minimum} <= {name} <= {maximum}"
        elif minimum is not None:
            want = f"{name} >= {minimum}"
        elif maximum is not None:
            want = f"{name} <= {maximum}"
        else:
            want = f"{name}"
        raise ValueError(f"expected {want}, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: Any) -> Any:
    """``value`` if it is one of ``choices``, else a ValueError listing them.

    Example:
        >>> check_choice("paired", "sampler", ("iid", "paired"))
        'paired'
    """
    if not any(value == c and type(value) is type(c) for c in choices):
        raise ValueError(f"expected {name} in {list(choices)}, got {value!r}")
    return value
