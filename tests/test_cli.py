"""The `lossvar` command: list, run, verify, variance; one-line errors, safe folders."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lossvar import cli, studies
from lossvar.results import read_table
from lossvar.studies import variance as variance_study

SMALL = ["--quick", "--replicates", "60", "--sizes", "8,16,32", "--noise-std", "1,2", "--dpi", "72"]


@pytest.fixture
def losses(tmp_path, monkeypatch):
    """A losses.npy in a fresh working folder (the folder the commands run in)."""
    monkeypatch.chdir(tmp_path)
    np.save("losses.npy", np.random.default_rng(0).exponential(size=300))
    return tmp_path / "losses.npy"


def _variance(*extra, out="res"):
    return cli.main(["variance", "--data", "losses.npy", "--replicates", "2000", "--dpi", "40",
                     "--out", out, *extra])


def test_list(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["variance_scaling", "sgd_vs_batch", "erm_spread",
                                               "robbins_monro", "trend_optimizers", "critical_batch",
                                               "variance"]


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


@pytest.mark.reproducibility
def test_the_reproduce_command_runs_as_written(losses, capsys):
    assert _variance() == 0
    manifest = json.loads((losses.parent / "res" / "manifest.json").read_text())
    command = manifest["command"]
    assert command.startswith("lossvar run variance ") and "--data losses.npy" in command
    assert command in (losses.parent / "res" / "summary.md").read_text()
    words = command.split()[1:] + ["--out", "again"]
    assert cli.main(words) == 0
    for name in ("variance", "scaling_fit"):
        assert (losses.parent / "res" / f"{name}.csv").read_bytes() == \
            (losses.parent / "again" / f"{name}.csv").read_bytes()


def test_overwrite_never_deletes_what_lossvar_did_not_write(losses, capsys):
    fake = losses.parent / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text("{}")
    (fake / "mydata.csv").write_text("x\n")
    assert _variance("--overwrite", out="fake") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fake" in err and "not a lossvar results folder" in err
    assert (fake / "mydata.csv").read_text() == "x\n"
    # a real results folder with a foreign file in it is refused too, naming the file
    assert _variance() == 0
    (losses.parent / "res" / "notes.txt").write_text("mine")
    before = (losses.parent / "res" / "manifest.json").read_bytes()
    assert _variance("--overwrite") == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "did not write" in err
    assert (losses.parent / "res" / "notes.txt").read_text() == "mine"
    assert (losses.parent / "res" / "manifest.json").read_bytes() == before
    # without it, the folder lossvar wrote is replaced
    (losses.parent / "res" / "notes.txt").unlink()
    assert _variance("--overwrite", "--seed", "5") == 0
    manifest = json.loads((losses.parent / "res" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["made_by"] == "lossvar"
    assert sorted(manifest["files"]) == sorted(p.name for p in (losses.parent / "res").iterdir())


@pytest.mark.reproducibility
def test_verify_names_a_changed_or_missing_input(losses, capsys):
    assert _variance() == 0
    res = losses.parent / "res"
    entry = json.loads((res / "manifest.json").read_text())["inputs"][0]
    assert entry["path"] == "losses.npy" and entry["size"] == losses.stat().st_size
    assert len(entry["sha256"]) == 64
    capsys.readouterr()
    x = np.load(losses)
    x[0] += 1.0
    np.save(losses, x)
    assert cli.main(["verify", "res"]) == 4
    out = capsys.readouterr().out
    assert "input --data losses.npy: input changed" in out and "nothing was rerun" in out
    losses.unlink()
    assert cli.main(["verify", "res"]) == 3
    assert "input --data losses.npy: input missing" in capsys.readouterr().out


@pytest.mark.reproducibility
def test_verify_finds_an_input_that_moved_with_its_results(losses, tmp_path, capsys):
    project = losses.parent
    assert _variance() == 0
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    os.rename(project / "losses.npy", moved / "losses.npy")
    os.rename(project / "res", moved / "res")
    os.chdir(moved.parent.parent)  # not where the run started, nor the folder's parent
    assert cli.main(["verify", str(moved / "res")]) == 0
    assert "variance: identical" in capsys.readouterr().out


def test_a_failing_rerun_is_one_line_with_its_own_status(losses, capsys):
    assert _variance() == 0
    path = losses.parent / "res" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["argv"] = [*manifest["argv"], "--replicates", "1"]
    path.write_text(json.dumps(manifest))
    capsys.readouterr()
    assert cli.main(["verify", "res"]) == 5
    captured = capsys.readouterr()
    assert "NOT verified: the rerun failed: variance exited with status 2" in captured.out
    assert "--replicates" in captured.out and "Traceback" not in captured.out + captured.err


def test_warnings_become_notes_and_one_line(losses, capsys):
    np.save(losses, np.random.default_rng(0).lognormal(sigma=2.0, size=300))
    assert _variance("--replicates", "300", "--batch-sizes", "1,2,4") == 0
    err = capsys.readouterr().err
    assert "Warning" not in err and err.count("lossvar: warning:") == 1
    assert "may under-cover" in err
    summary = (losses.parent / "res" / "summary.md").read_text()
    assert "## Notes" in summary and "warning: the intervals of batch sizes" in summary
    assert "caveat: the intervals at B = 1" in summary  # the verdict carries its caveat


def test_negative_numbers_in_lists_are_refused_by_name(losses, capsys):
    assert_exit = []
    for value in ("-3,4", "-1"):
        with pytest.raises(SystemExit) as exc:
            _variance("--batch-sizes", value)
        assert_exit.append(exc.value.code)
        err = capsys.readouterr().err
        assert "argument --batch-sizes" in err and "got '-" in err and "expected one argument" not in err
    assert assert_exit == [2, 2] and not (losses.parent / "res").exists()


@pytest.mark.parametrize("sizes, match", [("full", "needs a batch size below N = 300"),
                                          ("1,400", r"--batch-sizes: must be integers in \[1, N=300\]"),
                                          ("4,4", "--batch-sizes: must be distinct")])
def test_batch_sizes_are_checked_against_the_data(losses, capsys, sizes, match):
    assert _variance("--batch-sizes", sizes) == 2
    assert pytest.importorskip("re").search(match, capsys.readouterr().err)
    assert not (losses.parent / "res").exists()


def test_folders_follow_the_umask(losses):
    old = os.umask(0o027)
    try:
        assert _variance() == 0
    finally:
        os.umask(old)
    res = losses.parent / "res"
    assert res.stat().st_mode & 0o777 == 0o750
    assert (res / "variance.csv").stat().st_mode & 0o777 == 0o640


def test_stale_staging_of_dead_runs_is_removed(losses):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    stale = losses.parent / ".res.partial-1-abc"
    alive = losses.parent / ".res.partial-2-def"
    unmarked = losses.parent / ".other.partial-xyz"
    for folder, pid in ((stale, int(dead.stdout)), (alive, os.getpid() + 0 * 1)):
        folder.mkdir()
        (folder / ".lossvar-staging").write_text(json.dumps({"pid": pid, "host": os.uname().nodename}))
    unmarked.mkdir()
    assert _variance(out="other") == 0
    assert not stale.exists() and alive.exists() and unmarked.exists()


def _start(tmp_path, *argv):
    # A session of its own, as a terminal's process group: a signal to the group reaches
    # the worker processes too, as Ctrl-C in a terminal does. SIGINT at its default, as
    # in a terminal: a suite started in the background of a shell inherits it ignored
    # (POSIX), and Python then keeps ignoring it.
    return subprocess.Popen([sys.executable, "-m", "lossvar", *argv], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("sig, status, word, workers", [(signal.SIGTERM, 143, "terminated", "1"),
                                                        (signal.SIGINT, 130, "interrupted", "1"),
                                                        (signal.SIGINT, 130, "interrupted", "2")])
def test_an_interrupted_run_leaves_nothing_and_says_one_line(tmp_path, sig, status, word, workers):
    proc = _start(tmp_path, "run", "variance", "--data", "breast_cancer", "--replicates", "50000000",
                  "--batch-sizes", "1,2,4,8", "--workers", workers, "--out", "big")
    deadline = time.monotonic() + 120
    while not any(tmp_path.glob(".big.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # inside the Monte Carlo
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert err.strip().splitlines() == [f"lossvar: {word}; the unfinished results folder was removed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


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
    ("1.0\nnan\n", "entry 1 is nan"),
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
    np.testing.assert_array_equal(variance_study.read_losses(str(path)), values)


def test_python_dash_m_lossvar():
    proc = subprocess.run([sys.executable, "-m", "lossvar", "list"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "variance_scaling" in proc.stdout


def test_run_accepts_progress_flags(tmp_path):
    assert cli.main(["run", "erm_spread", *SMALL, "--no-progress", "--out", str(tmp_path / "a")]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert "progress" not in manifest["parameters"]


def test_variance_is_a_registered_study(losses):
    assert "variance" in studies.STUDIES and "variance" not in studies.LECTURE
    assert cli.main(["run", "variance", "--data", "losses.npy", "--replicates", "2000", "--dpi", "40",
                     "--out", "r"]) == 0
    assert read_table(losses.parent / "r" / "variance.csv").batch_size.tolist() == [1, 4, 16, 64, 300]
