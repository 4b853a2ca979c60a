"""The gallery is current: each study, rerun at the gallery's settings, makes the tables
kept in docs/gallery/NAME/ (to rounding) and figures with the same texts.

A failure says what differs and how to fix it: regenerate the gallery with
``python studies/make_gallery.py`` (or ``--studies NAME``) and commit docs/. What the
check compares, and what it cannot see (pure styling), is in studies/make_gallery.py.
"""

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest

from lossvar import studies

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "studies" / "make_gallery.py"


def _make_gallery():
    spec = importlib.util.spec_from_file_location("make_gallery", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gallery = _make_gallery()


def test_the_gallery_covers_every_study_of_the_lecture():
    assert list(gallery.PRESET) == list(studies.LECTURE)
    page = (ROOT / "docs/gallery.md").read_text()
    for name in studies.LECTURE:
        record = json.loads((gallery.DOCS / "gallery" / name / "gallery.json").read_text())
        for figure in record["figures"]:  # every figure of the run is shown, as a PNG
            assert (gallery.DOCS / f"{name}-{figure}.png").is_file(), f"{name}-{figure}.png"
            assert f"{name}-{figure}.png" in page
        # the command under the figures in docs/gallery.md makes them
        assert " ".join(["lossvar run", name, *record["argv"]]) in page, name


def test_the_check_sees_a_changed_text_and_changed_settings(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    name = "erm_spread"  # a fast study (seconds)
    shutil.copytree(gallery.DOCS / "gallery" / name, tmp_path / "gallery" / name)
    path = tmp_path / "gallery" / name / "gallery.json"
    record = json.loads(path.read_text())
    figure = sorted(record["figures"])[0]
    record["figures"][figure][-1] += " (changed)"
    path.write_text(json.dumps(record))
    problems = gallery.check(name, tmp_path)
    assert len(problems) == 1 and f"figure {figure}: its texts differ" in problems[0]
    assert "(changed)" in problems[0]
    monkeypatch.setitem(gallery.PRESET, name, ["--replicates", "3"])
    assert "not the gallery's settings now" in gallery.check(name, tmp_path)[0]


@pytest.mark.parametrize("name", studies.LECTURE)
def test_gallery_study_is_current(name):
    pytest.importorskip("sklearn")  # the real data sets of the studies
    # Worker processes never change a bit; two use CI's two cores during the rerun.
    problems = gallery.check(name, workers=min(2, os.cpu_count() or 1))
    assert not problems, "\n".join(problems) + f"\n{gallery.REGENERATE}"
