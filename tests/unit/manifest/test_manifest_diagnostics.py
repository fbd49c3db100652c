"""`Diagnostic`: the one form of a problem, in a file or not, and its one-line text.

Covers: the text of a finding in a file (with and without a field), of a finding
about no file for each severity, and that only errors count as errors for the CLI.
"""

from __future__ import annotations

import pytest

from orchestrator.manifest.diagnostics import Diagnostic


def test_a_finding_in_a_file_names_file_line_column_severity_and_field() -> None:
    found = Diagnostic("recordings.d/a.yaml", 3, 5, "layout.background", "not a colour")
    assert found.text() == "recordings.d/a.yaml:3:5: error: layout.background: not a colour"
    warning = Diagnostic("a.yaml", 1, 1, "", "literal secret", severity="warning")
    assert warning.text() == "a.yaml:1:1: warning: literal secret"


@pytest.mark.parametrize(
    ("severity", "text"),
    [
        ("error", "app profile main: variable X is not set"),
        ("warning", "warning: app profile main: variable X is not set"),
        ("note", "note: app profile main: variable X is not set"),
    ],
)
def test_a_general_finding_says_its_severity_unless_an_error(severity: str, text: str) -> None:
    found = Diagnostic.general("app profile main: variable X is not set", severity)  # type: ignore[arg-type]
    assert (found.file, found.line, found.column, found.field) == ("", 0, 0, "")
    assert found.severity == severity
    assert found.text() == text


def test_a_file_name_that_is_not_utf8_is_held_printable() -> None:
    """Whatever made a finding, its file name prints, logs and stores: a byte that is not
    UTF-8 (a lone surrogate to Python) is shown as `\\xe9`, a UTF-8 name as it is."""
    found = Diagnostic("d/caf\udce9.yaml", 2, 3, "mode", "wrong")
    assert found.file == "d/caf\\xe9.yaml"
    assert found.text().encode("utf-8") == b"d/caf\\xe9.yaml:2:3: error: mode: wrong"
    assert Diagnostic("d/café.yaml", 1, 1, "", "x").file == "d/café.yaml"
    assert Diagnostic("d/\ud800.yaml", 1, 1, "", "x").file == "d/\\ud800.yaml"
