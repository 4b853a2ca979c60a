"""The `lossvar` command: list, run, verify, variance; one-line errors with exit status 2."""

import json

import numpy as np
import pytest

from lossvar import cli

SMALL = ["--quick", "--replicates", "60", "--sizes", "8,16,32", "--noise-std", "1,2", "--dpi", "72"]


def test_list(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["variance_scaling", "sgd_vs_batch", "erm_spread",
                                               "robbins_monro", "trend_optimizers", "critical_batch"]


def test_run_unknown_study_lists_valid_ones(capsys):
    assert cli.main(["run", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown study 'nope'" in err and "erm_spread" in err


@pytest.mark.parametrize("content", [None, "{oops", '{"study": "erm_spread"}'])
def test_verify_missing_or_corrupt_manifest(tmp_path, capsys, content):
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    assert cli.main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lossvar: error: verify:")


@pytest.mark.reproducibility
def test_run_verify_and_tamper(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "erm_spread", *SMALL, "--seed", "3", "--out", str(out)]) == 0
    assert cli.main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "spread: identical" in text and "fit: identical" in text and "WARNING" not in text
    # alter one value of one table
    lines = (out / "spread.csv").read_text().splitlines()
    cells = lines[2].split(",")
    cells[4] = repr(float(cells[4]) * 1.001)
    lines[2] = ",".join(cells)
    (out / "spread.csv").write_text("\n".join(lines) + "\n")
    assert cli.main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert "spread: changed after the run" in text
    assert "fit: identical" in text and "NOT verified: 1 of 3 tables differ" in text
    # the run refuses to overwrite silently
    assert cli.main(["run", "erm_spread", *SMALL, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["sizes"] == [8, 16, 32]


def test_variance_subcommand_with_workers(tmp_path, capsys):
    losses = tmp_path / "l.npy"
    np.save(losses, np.random.default_rng(0).exponential(size=100))
    out = tmp_path / "v"
    assert cli.main(["variance", "--data", str(losses), "--batch-sizes", "1,4,16,full",
                     "--replicates", "500", "--workers", "1", "--out", str(out)]) == 0
    assert (out / "variance.csv").is_file() and (out / "variance.png").is_file()


@pytest.mark.reproducibility
def test_variance_writes_a_verifiable_results_folder(tmp_path, capsys):
    out = tmp_path / "D"
    assert cli.main(["variance", "--data", "breast_cancer", "--batch-sizes", "1,4,16",
                     "--replicates", "2000", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["study"] == "variance" and set(manifest["tables"]) == {"variance", "scaling_fit"}
    assert (out / "summary.md").read_text().count("Verdict:") == 1
    capsys.readouterr()
    assert cli.main(["verify", str(out)]) == 0
    assert "variance: identical" in capsys.readouterr().out


def test_a_bad_option_fails_before_any_work_and_leaves_nothing(tmp_path, capsys):
    d2 = tmp_path / "D2"
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "robbins_monro", "--quick", "--dpi", "0", "--out", str(d2)])
    assert exc.value.code == 2 and "argument --dpi" in capsys.readouterr().err
    assert not d2.exists()
    with pytest.raises(SystemExit):
        cli.main(["run", "robbins_monro", "--quick", "--seed", "-1", "--out", str(d2)])
    assert "argument --seed: must be an integer >= 0" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(["run", "robbins_monro", "--quick", "--out", str(afile / "x")]) == 2
    assert f"--out: {afile} is a file, not a folder" in capsys.readouterr().err
    assert cli.main(["variance", "--data", "nope", "--out", str(d2)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lossvar: error: --data must be one of breast_cancer") and "'nope'" in err
    assert not d2.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_failing_run_leaves_no_folder_and_keeps_the_old_one(tmp_path, monkeypatch):
    from lossvar.studies import erm_spread

    out = tmp_path / "run"
    assert cli.main(["run", "erm_spread", *SMALL, "--out", str(out)]) == 0
    before = (out / "manifest.json").read_bytes()

    def broken(args, folder):
        folder.table("partial", __import__("pandas").DataFrame({"x": [1.0]}))
        raise RuntimeError("boom")

    monkeypatch.setattr(erm_spread, "compute", broken)
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["run", "erm_spread", *SMALL, "--out", str(out), "--overwrite"])
    assert (out / "manifest.json").read_bytes() == before and not (out / "partial.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left


@pytest.mark.parametrize("text, match", [
    ("loss\n1.0\n\n2.0\nx\n", "line 5 is not a number: 'x'"),
    ("1.0\n", "N = 1 loss"),
    ("a,b,c\n1,2,3\n", "one column of losses"),
])
def test_losses_csv_errors_name_the_real_line(tmp_path, capsys, text, match):
    path = tmp_path / "l.csv"
    path.write_text(text)
    assert cli.main(["variance", "--data", str(path), "--out", str(tmp_path / "o")]) == 2
    assert match in capsys.readouterr().err


def test_losses_csv_from_pandas_series(tmp_path):
    import pandas as pd

    values = np.random.default_rng(0).exponential(size=50)
    path = tmp_path / "s.csv"
    pd.Series(values).to_csv(path)
    losses, _ = cli.load_losses(str(path))
    np.testing.assert_array_equal(losses, values)


def test_python_dash_m_lossvar():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "lossvar", "list"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "variance_scaling" in proc.stdout


def test_run_accepts_progress_flags(tmp_path):
    assert cli.main(["run", "erm_spread", *SMALL, "--no-progress", "--out", str(tmp_path / "a")]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert "progress" not in manifest["parameters"]
