"""The README's examples run as written (in a scratch folder)."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from lossvar import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_tour_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    blocks = re.findall(r"```python\n(.*?)```", _section("A short tour"), flags=re.S)
    assert blocks, "the README has a python tour"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["big"].table.target_met.all()
    assert "satisfied" in capsys.readouterr().out.lower()


def test_your_own_losses_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.save("losses.npy", np.random.default_rng(0).lognormal(size=500))
    section = _section("Your own losses")
    commands = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].strip().splitlines()
    for line in commands:
        words = shlex.split(line)
        assert words[0] == "lossvar"
        assert cli.main(words[1:]) == 0, line
    assert "identical" in capsys.readouterr().out
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102
    assert "agrees with theory" in capsys.readouterr().out
