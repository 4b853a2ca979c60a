"""The `lossvar` command: list, run, verify, variance; one-line errors with exit status 2."""

import json

import numpy as np
import pytest

from lossvar import cli

SMALL = ["--quick", "--replicates", "60", "--sizes", "8,16,32", "--noise-std", "1,2"]


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
    assert "fit: identical" in text and "NOT verified: 1 of 2 tables differ" in text
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
