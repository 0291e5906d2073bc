"""Words and numbers in the report: markdown tables and the formats of fractions, metrics, p-values and ratios.

One place for each format, so that a number reads the same in a sentence, a table and a figure.
"""
from __future__ import annotations

import math

import numpy as np


def finite(x) -> bool:
    """A real number (not a bool, not nan or inf)."""
    return (isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, (bool, np.bool_))
            and math.isfinite(x))


def pct(fraction, digits: int = 4) -> str:
    """0.25 -> '25%' (a data fraction)."""
    return f"{100 * float(fraction):.{digits}g}%" if fraction is not None else ""


def percent(x) -> str:
    """0.4567 -> '45.67' (a metric in %, or x 100 for an area under a curve)."""
    return f"{100 * x:.2f}" if finite(x) else "-"


def points(x) -> str:
    """A difference of two metrics in points, signed."""
    return f"{100 * x:+.2f}" if finite(x) else "-"


# a t interval's end beyond its metric's range is shown at the edge with this mark; CLIPPED_NOTE says so once
DAGGER = "†"
CLIPPED_NOTE = (f"{DAGGER} the t interval reaches beyond the metric's range (few seeds); shown clipped at the "
                "range's edge.")


def bounded(x, bounds: tuple[float, float], fmt=percent) -> str:
    """fmt(x) for x within bounds (low, high); beyond them, fmt of the nearer edge marked with DAGGER.

    >>> bounded(1.117, (0.0, 1.0))
    '100.00†'
    """
    low, high = bounds
    if finite(x) and not low <= x <= high:
        return fmt(min(max(x, low), high)) + DAGGER
    return fmt(x)


def interval(low, high, bounds: tuple[float, float], fmt=percent) -> str:
    """'86.29 to 100.00†': both ends through `bounded`; '-' when there is no interval (one seed)."""
    if not (finite(low) and finite(high)):
        return "-"
    return f"{bounded(low, bounds, fmt)} to {bounded(high, bounds, fmt)}"


def clipped_note(*texts: str) -> str:
    """CLIPPED_NOTE when a marked value appears in `texts`, else '': a section explains the mark only if it uses it."""
    return CLIPPED_NOTE if any(DAGGER in text for text in texts) else ""


def says_something(metric: str, labels) -> bool:
    """Whether a metric tells anything of a task with `labels` labels (None: not known): top-5 accuracy of 5 labels
    or fewer is always 100% (training/metrics.py counts the top min(5, C))."""
    return not (metric.removeprefix("val_").removeprefix("test_") == "top5" and finite(labels) and labels <= 5)


def num(x) -> str:
    return f"{x:.4f}" if finite(x) else "-"


def p_value(x) -> str:
    if not finite(x):
        return "-"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def times(x) -> str:
    """A data-efficiency ratio: '2.50x', 'beyond grid' or '-'."""
    if not isinstance(x, float) or math.isnan(x):
        return "-"
    return "beyond grid" if math.isinf(x) else f"{x:.2f}x"


def capitalised(text: str) -> str:
    """'test macro ROC-AUC' -> 'Test macro ROC-AUC' (str.capitalize would lower the rest)."""
    return text[:1].upper() + text[1:]


def truthy(value) -> bool:
    return value is True or str(value).lower() in ("true", "1", "yes")


def table(head: list[str], rows: list[list[str]]) -> str:
    """A markdown table; cells lose the characters that would break it."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in cells) + " |"
    return "\n".join([line(head), line(["---"] * len(head))] + [line(r) for r in rows])


def config_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(empty)"
    if value == "" or value is None:
        return "(empty)"
    return f"{value}"
