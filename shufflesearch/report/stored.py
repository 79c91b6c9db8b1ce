"""Values read back from a storage that other versions, other machines (or a damaged file) wrote.

A field of the wrong type reads as missing, so a report shows a blank cell, never a crash.

>>> stored_number(10**400), stored_number(True), stored_number(float("nan")), stored_number(2)
(None, None, None, 2.0)
"""

from __future__ import annotations

import math

from .text import encodable


def stored_number(value: object) -> float | None:
    """A stored number as a finite float; None when missing, not a real number, NaN, infinite or beyond a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def chance_pct(record: dict) -> float | None:
    """Top-1 by chance (%) for the class count a trial recorded; None where it recorded none that is usable."""
    classes = stored_number(record.get("classes"))
    return round(100 / classes, 2) if classes is not None and classes >= 2 else None


def stored_text(value: object) -> str | None:
    """Stored text as every output can write it (a lone surrogate from JSON cannot be UTF-8); None if not text."""
    return encodable(value) if isinstance(value, str) and value else None


def stored_window(value: object) -> tuple[float, float] | None:
    """A stored [min, max] pair of numbers, or None."""
    values = [stored_number(x) for x in value] if isinstance(value, (list, tuple)) else []
    return (values[0], values[1]) if len(values) == 2 and None not in values else None
