"""Reports: plots and a markdown summary from a directory of sweep cell results."""

from experiments.report.render import render_report

__all__ = ["render_report"]
