"""docs/guide/pytorch.md runs as written: every ```python block, each in a fresh namespace.

The five-line example prints exact statistics (6 significant digits of float64 sums), and the
replicate trainings 4 significant digits of float64 trainings that agree with torch.optim's to
1e-15 (tests/test_torch_sgd.py), so their outputs must equal the page's text blocks; the training
script's output is checked for its shape (three checkpoints) and for the page's claim that the
estimate at each checkpoint's parameters covers the exact value (fixed seeds: deterministic on a
given machine; 95% intervals, so a fresh seed would miss at one of the three with probability
about 0.14). Fragments that cannot run alone are fenced as ```{code-block} python.
"""

import re
import runpy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is optional (pip install 'lossvar[torch]'): "
                                             "the guide's examples need it")
pytest.importorskip("sklearn")

GUIDE = Path(__file__).resolve().parent.parent / "docs/guide/pytorch.md"
BLOCK = re.compile(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```\n)?", re.S)


def _blocks():
    return BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_guide_has_its_four_examples():
    assert len(_blocks()) == 4


def test_five_lines_print_the_page_output(capsys, tmp_path):
    code, expected = _blocks()[0]
    path = tmp_path / "five_lines.py"
    path.write_text(code)
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out == expected


def test_every_engine_example_runs(capsys, tmp_path):
    code, _ = _blocks()[1]
    path = tmp_path / "engines.py"
    path.write_text(code)
    ns = runpy.run_path(str(path), run_name="__main__")
    assert "exact_variance" in capsys.readouterr().out
    assert ns["Hv"].shape == (ns["problem"].p,) and ns["pairs"].n_pairs == 200


def test_replicate_trainings_print_the_page_output(capsys, tmp_path):
    code, expected = _blocks()[2]
    path = tmp_path / "replicates.py"
    path.write_text(code)
    runpy.run_path(str(path), run_name="__main__")
    assert capsys.readouterr().out == expected


def test_training_script_measures_three_checkpoints(capsys, tmp_path):
    code, _ = _blocks()[3]
    path = tmp_path / "training.py"
    path.write_text(code)
    runpy.run_path(str(path), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["20", "200", "1400"]
    number = r"(-?[\d.]+|inf)"
    for line in lines[:3]:
        at_w = re.search(rf"at w +{number} \[{number}, {number}\] +exact +{number}", line)
        low, high, exact = float(at_w[2]), float(at_w[3]), float(at_w[4])
        assert low <= exact <= high, line
