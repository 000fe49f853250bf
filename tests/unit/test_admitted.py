"""The coordinator's participants file: parsing, and each name admitted exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcare.coordinator.admitted import AdmittedFile, read_names


def test_read_names_skips_comments_blanks_and_bad_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "names"
    assert read_names(path) == []  # no file yet: nobody extra
    path.write_text(
        "# sites created after the job\nnorth-clinic\n\n  st-luke  # ward 4\nBad_Name\n"
    )
    assert read_names(path) == ["north-clinic", "st-luke"]
    assert "'Bad_Name' is not a participant name" in caplog.text


def test_each_new_name_is_admitted_once(tmp_path: Path) -> None:
    path = tmp_path / "names"
    admitted: list[str] = []
    watcher = AdmittedFile(path, admitted.append, interval=0.05)
    assert watcher.poll() == []
    path.write_text("north-clinic\n")
    assert watcher.poll() == ["north-clinic"]
    assert watcher.poll() == []
    path.write_text("north-clinic\nst-luke\n")
    assert watcher.poll() == ["st-luke"]
    path.write_text("st-luke\n")  # a name taken out of the file stays admitted
    assert watcher.poll() == []
    assert admitted == ["north-clinic", "st-luke"]
