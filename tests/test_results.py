"""Results folders: exact tables, manifests, the overwrite rule and verification."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lossvar import results


@pytest.mark.reproducibility
def test_write_table_round_trips_floats_exactly(tmp_path):
    x = np.random.default_rng(0).standard_normal(200) * 10.0 ** np.arange(-100, 100)
    table = pd.DataFrame({"name": ["a"] * 200, "x": x, "k": np.arange(200)})
    sha = results.write_table(table, tmp_path / "t.csv")
    back = results.read_table(tmp_path / "t.csv")
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


@pytest.mark.reproducibility
def test_verify_identical_and_different(tmp_path):
    path = _folder(tmp_path)
    report = results.verify(path, _rerun(1.0))
    assert report.ok and report.identical and "numbers: identical" in str(report)
    report = results.verify(path, _rerun(1.5))
    assert not report.ok
    assert "numbers: DIFFERS (first at row 1, column 'x': 1 vs rerun 1.5" in str(report)
    assert "NOT verified: 1 of 1 tables differ" in str(report)


@pytest.mark.reproducibility
def test_verify_rounding_is_reproduced_not_identical(tmp_path):
    path = _folder(tmp_path)
    # A rerun on another CPU: the same numbers but for a few ulps.
    report = results.verify(path, _rerun(np.nextafter(np.nextafter(1.0, 2.0), 2.0)))
    assert report.ok and not report.identical
    check = report.checks[0]
    assert check.outcome == "reproduced to rounding"
    assert 0 < check.max_rel_diff < 1e-15
    assert "largest relative difference 4.4e-16, at row 1, column 'x'" in str(report)
    assert "the others reproduced to rounding" in str(report)


@pytest.mark.reproducibility
@pytest.mark.parametrize("factor", [1 + 1e-7, 1 + 1e-12])
def test_verify_fails_a_table_edited_after_the_run(tmp_path, factor):
    # Even an edit far below the rounding tolerance is caught: the sha256 no
    # longer matches the manifest, whatever the rerun gives.
    path = _folder(tmp_path)
    csv = path / "numbers.csv"
    csv.write_text(csv.read_text().replace("0.33333333333333331", repr(1 / 3 * factor)))
    report = results.verify(path, _rerun(1.0))
    assert not report.ok
    assert "numbers: changed after the run" in str(report)
    assert "NOT verified" in str(report)


def test_compare_bytes_rules():
    def csv(*rows):
        return ("name,x\n" + "".join(f"{n},{x}\n" for n, x in rows)).encode()

    same = csv(("a", "1"), ("b", "nan"))
    assert results.compare_bytes(same, same)[0] == "identical"
    assert results.compare_bytes(csv(("a", "1.0")), csv(("a", "1")))[0] == "reproduced to rounding"
    assert results.compare_bytes(csv(("a", "1"), ("b", "nan")), csv(("a", "1"), ("b", "nan ")))[0] == \
        "DIFFERS"
    assert results.compare_bytes(csv(("a", "1")), csv(("b", "1")))[0] == "DIFFERS"
    assert results.compare_bytes(csv(("a", "inf")), csv(("a", "-inf")))[0] == "DIFFERS"
    assert results.compare_bytes(csv(("a", "1")), csv(("a", "1"), ("b", "2")))[0] == "DIFFERS"
    # A value near zero in a column of large ones is judged on the column's scale.
    outcome, _, rel = results.compare_bytes(csv(("a", "100"), ("b", "1e-17")),
                                            csv(("a", "100"), ("b", "3e-17")))
    assert outcome == "reproduced to rounding" and rel == pytest.approx(2e-19)
    outcome, _, rel = results.compare_bytes(csv(("a", "1")), csv(("a", "1.0000001")))
    assert outcome == "DIFFERS" and rel == pytest.approx(1e-7)


def test_manifest_records_the_machine_and_revision(tmp_path):
    if (not (Path(results.__file__).resolve().parents[2] / ".git").exists()
            and results.environment()["git"]["commit"] is None):
        pytest.skip("no revision to record: lossvar runs from a source tree without .git (a copy, "
                    "or an sdist not built from a checkout) and its build recorded no commit")
    m = results.read_manifest(_folder(tmp_path))
    assert set(m["machine"]) == {"cpu", "cores", "simd", "blas"}
    assert m["machine"]["simd"] and all("internal_api" in b for b in m["machine"]["blas"])
    assert m["git"]["source"] in {"live git checkout", "recorded at build"}
    assert m["git"]["commit"]
    summary = (m_path := tmp_path / "run" / "summary.md").read_text()
    assert f"git commit {m['git']['commit']}" in summary, m_path


def test_describe_revision_without_git():
    unknown = {"commit": None, "dirty": None,
               "source": "unknown: installed from an sdist or a tree without git"}
    assert results.describe_revision(unknown) == (
        "source revision unknown: installed from an sdist or a tree without git")
    built = {"commit": "abc123", "dirty": True, "source": "recorded at build"}
    assert results.describe_revision(built) == "git commit abc123 (dirty tree) (recorded at build)"


def test_verify_warns_about_versions(tmp_path):
    path = _folder(tmp_path)
    m = json.loads((path / "manifest.json").read_text())
    m["versions"]["numpy"] = "0.0.1"
    (path / "manifest.json").write_text(json.dumps(m))
    report = results.verify(path, _rerun(1.0))
    assert report.ok
    assert "WARNING: numpy is" in str(report) and "0.0.1" in str(report)
