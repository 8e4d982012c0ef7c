"""Print the fuzz summary line at the end of a test session that ran fuzz cases."""

from __future__ import annotations

from .harness import TOTAL


def pytest_terminal_summary(terminalreporter):
    if TOTAL.cases:
        terminalreporter.write_line(TOTAL.line())
