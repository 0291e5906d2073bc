"""The report: statistics over the transfer runs, figures, and report.md / report.html, from the run files alone.

    >>> from audio2image.report import build_report
    >>> build_report(Path("runs/demo"))
"""
from audio2image.report.report import build_report

__all__ = ["build_report"]
