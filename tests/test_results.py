"""Results folders: exact tables, manifests, the overwrite rule and verification."""

import json

import numpy as np
import pandas as pd
import pytest

from lossvar import results


def test_write_table_round_trips_floats_exactly(tmp_path):
    x = np.random.default_rng(0).standard_normal(200) * 10.0 ** np.arange(-100, 100)
    table = pd.DataFrame({"name": ["a"] * 200, "x": x, "k": np.arange(200)})
    sha = results.write_table(table, tmp_path / "t.csv")
    back = pd.read_csv(tmp_path / "t.csv")
    assert np.array_equal(back.x.to_numpy(), x)
    assert sha == results.sha256_file(tmp_path / "t.csv")
    assert results.write_table(table, tmp_path / "u.csv") == sha  # same values, same bytes


def test_params_to_argv_inverts_the_option_convention():
    params = {"seed": 3, "out": "x", "overwrite": True, "quick": True, "flag": False,
              "batch_sizes": [1, 4, "full"], "noise_std": 0.5, "data": "wine", "none": None}
    assert results.params_to_argv(params) == [
        "--seed", "3", "--quick", "--batch-sizes", "1,4,full", "--noise-std", "0.5",
        "--data", "wine"]


def _folder(tmp_path, value=1.0, **kw):
    f = results.StudyFolder.create(tmp_path / "run", "demo", {"seed": 7, "value": value}, **kw)
    f.table("numbers", pd.DataFrame({"i": [0, 1, 2], "x": [0.1, value, 1 / 3]}))
    f.finish("# demo\n\nkey number: 1.")
    return f.path


def test_folder_manifest_and_summary(tmp_path):
    path = _folder(tmp_path)
    m = results.read_manifest(path)
    assert m["study"] == "demo" and m["seed"] == 7 and m["parameters"]["value"] == 1.0
    assert set(m["versions"]) == {"lossvar", "numpy", "scipy", "pandas", "python"}
    assert m["tables"]["numbers"]["sha256"] == results.sha256_file(path / "numbers.csv")
    assert m["command"] == "lossvar run demo --seed 7 --value 1.0"
    assert "wall_time_seconds" in m and "platform" in m and {"commit", "dirty"} <= set(m["git"])
    assert "lossvar run demo --seed 7 --value 1.0" in (path / "summary.md").read_text()


def test_existing_folder_needs_overwrite(tmp_path):
    path = _folder(tmp_path)
    with pytest.raises(FileExistsError, match="not empty"):
        _folder(tmp_path)
    _folder(tmp_path, value=2.0, overwrite=True)
    assert results.read_manifest(path)["parameters"]["value"] == 2.0
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a lossvar results folder"):
        results.StudyFolder.create(other, "demo", {}, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_default_folder_is_new_and_dated(tmp_path):
    a = results.default_folder("demo", base=tmp_path)
    a.mkdir()
    b = results.default_folder("demo", base=tmp_path)
    assert a != b and a.name.startswith("demo-2") and not b.exists()


@pytest.mark.parametrize("content, match", [
    (None, "no manifest.json"), ("{not json", "corrupt"), ("[1, 2]", "corrupt"),
    ('{"study": "demo"}', "missing parameters, tables, versions"),
])
def test_read_manifest_errors(tmp_path, content, match):
    tmp_path.joinpath("x.csv").write_text("a\n1\n")
    if content is not None:
        tmp_path.joinpath("manifest.json").write_text(content)
    with pytest.raises(results.ManifestError, match=match):
        results.read_manifest(tmp_path)


def _rerun(value):
    def rerun(study, argv, out):
        assert study == "demo" and argv == ["--seed", "7", "--value", "1.0"]
        f = results.StudyFolder.create(out, "demo", {"seed": 7, "value": 1.0})
        f.table("numbers", pd.DataFrame({"i": [0, 1, 2], "x": [0.1, value, 1 / 3]}))
        f.finish("")
    return rerun


def test_verify_identical_and_different(tmp_path):
    path = _folder(tmp_path)
    report = results.verify(path, _rerun(1.0))
    assert report.ok and "numbers: identical" in str(report)
    report = results.verify(path, _rerun(1.5))
    assert not report.ok
    assert "numbers: DIFFERS (first at row 1, column 'x': 1 vs rerun 1.5)" in str(report)


def test_verify_detects_an_edited_table(tmp_path):
    path = _folder(tmp_path)
    csv = path / "numbers.csv"
    csv.write_text(csv.read_text().replace("0.10000000000000001", "0.2"))
    report = results.verify(path, _rerun(1.0))
    assert not report.ok
    text = str(report)
    assert "numbers: DIFFERS (first at row 0, column 'x'" in text
    assert "changed after the run" in text


def test_verify_warns_about_versions(tmp_path):
    path = _folder(tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    m["versions"]["numpy"] = "0.0.1"
    (path / "manifest.json").write_text(json.dumps(m))
    report = results.verify(path, _rerun(1.0))
    assert report.ok
    assert "WARNING: numpy is" in str(report) and "0.0.1" in str(report)
