"""The run report: ``OUTPUT/report.html``, written at the end of every run and by ``thresher report``."""

from thresher.report.collect import ReportError
from thresher.report.render import write_report

__all__ = ["ReportError", "write_report"]
