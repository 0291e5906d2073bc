"""Analyses run after the transfer runs on the networks themselves: representation similarity (CKA).

Statistics of the run files alone (gains, data efficiency, convergence speed) are the report's (report/).

Modules here read features or run results and return numbers; importing the package pulls in nothing heavy
(no torch), so each analysis module imports only what it needs.
"""
from audio2image.analysis.cka import linear_cka

__all__ = ["linear_cka"]
