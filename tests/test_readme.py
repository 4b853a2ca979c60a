"""Every code block of the README runs as written, in a scratch folder.

The rules, so that nothing is skipped silently:

- Every code block is collected: fenced blocks (```LANG) and indented ones. A block in
  a language other than ``python`` or ``bash`` (an indented block counts as bash) fails
  :func:`test_every_block_is_python_or_bash`.
- The blocks of one ``## section`` run in order in one scratch folder, where the data
  files the README assumes (``losses.npy``) are made first. ``python`` blocks run with
  ``exec`` in one namespace per section; inline code in the section's prose that calls
  ``lossvar.plots`` runs in that namespace too, and its figure is saved as a user would.
- ``bash`` blocks: each line is cut at ``&&`` into commands (``#`` starts a comment). A
  command that starts with ``lossvar`` runs through :func:`lossvar.cli.main` and must
  exit 0. Set-up commands are not run here: making or entering a virtual environment
  (``python3 -m venv``, ``. .venv/bin/activate``) and ``pip install``. Neither is a
  command that CI runs itself: the README's test command (the block after
  ``<!-- test-command -->``, which .ci/run extracts and runs), or a command whose every
  word is on one line of .ci/run (the documentation build). Any other command fails.
"""

import re
import shlex
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from lossvar import cli

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"
MARKER = "<!-- test-command -->"


def _blocks() -> list[dict]:
    """Every code block: section, language, code, whether it is the test command."""
    blocks, section, lines = [], "", README.read_text().splitlines()
    i, previous = 0, ""
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        fence = re.match(r"^(`{3,})\s*([\w+-]*)", line)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith(fence.group(1)))
            blocks.append({"section": section, "lang": fence.group(2) or "(none)",
                           "code": "\n".join(lines[i + 1:end]) + "\n",
                           "test_command": previous.strip() == MARKER})
            previous, i = lines[end], end + 1
            continue
        if line.startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            code = [ln[4:] for ln in lines[i:end] if ln.strip()]
            blocks.append({"section": section, "lang": "bash", "code": "\n".join(code) + "\n",
                           "test_command": False})
            previous, i = lines[end - 1], end
            continue
        if line.strip():
            previous = line
        i += 1
    return blocks


BLOCKS = _blocks()
SECTIONS = list(dict.fromkeys(b["section"] for b in BLOCKS))


def _inline_plot_calls(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    prose = re.sub(r"^(`{3,}).*?^\1", "", text[start:end], flags=re.S | re.M)
    return re.findall(r"`(lossvar\.plots\.\w+\([^`]*\))`", prose)


def _setup(words: list[str]) -> bool:
    """A command that makes or enters a virtual environment, or installs packages."""
    return (words[:3] in (["python3", "-m", "venv"], ["python", "-m", "venv"])
            or words[:1] in (["."], ["source"]) or words[:2] == ["pip", "install"])


def _run_by_ci(words: list[str], test_command: bool) -> bool:
    ci = CI.read_text()
    return (test_command and MARKER in ci) or any(
        set(words) <= set(line.split()) for line in ci.splitlines())


def _run_bash(block: dict, capsys) -> None:
    for line in block["code"].splitlines():
        for command in line.split("&&"):
            words = shlex.split(command, comments=True)
            if not words or _setup(words) or _run_by_ci(words, block["test_command"]):
                continue
            assert words[0] == "lossvar", (
                f"README, {block['section']!r}: `{command.strip()}` is neither a lossvar command "
                "nor set-up nor run by .ci/run: run it in tests/test_readme.py")
            status = cli.main(words[1:])
            out = capsys.readouterr()
            assert status == 0, f"`{command.strip()}` exited {status}:\n{out.out}\n{out.err}"
            print(out.out, end="")  # kept for the section's checks below


def _figure_fits_and_states_the_level(fig, path: Path, level: str) -> None:
    fig.savefig(path)  # as the README says: outside lossvar.plots.style(), no tight box
    fig.canvas.draw()
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    w, h = fig.get_size_inches()
    px = 1.0 / fig.dpi
    assert box.x0 >= -px and box.y0 >= -px and box.x1 <= w + px and box.y1 <= h + px, (path, box)
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    words = " ".join(lg.get_title().get_text() + " " + " ".join(t.get_text() for t in lg.get_texts())
                     for lg in legends)
    assert f"{level} confidence intervals" in words, words


def test_every_block_is_python_or_bash():
    # The front door's blocks: the two set-up commands, the example in Python and on the
    # command line, and the studies' commands.
    assert len(BLOCKS) >= 5 and any(b["lang"] == "python" for b in BLOCKS)
    other = [(b["section"], b["lang"]) for b in BLOCKS if b["lang"] not in ("python", "bash")]
    assert not other, f"README code blocks in no language this test runs: {other}"
    assert sum(b["test_command"] for b in BLOCKS) == 1, "one test command, after " + MARKER


@pytest.mark.parametrize("section", SECTIONS)
def test_section_runs_as_written(section, tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")  # the README's data sets (breast_cancer, wine)
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    np.save("losses.npy", np.random.default_rng(0).lognormal(size=500))
    namespace: dict = {}
    for block in (b for b in BLOCKS if b["section"] == section):
        if block["lang"] == "bash":
            _run_bash(block, capsys)
        else:
            assert block["lang"] == "python", block
            exec(compile(block["code"], f"README.md ({section})", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    # What each section promises its reader, beyond running.
    if section == "Your own losses":
        assert "identical" in out and "agrees with theory" in out
        assert _inline_plot_calls(section) == ["lossvar.plots.variance_plot(res.table)",
                                               "lossvar.plots.ratio_plot(res.table)"]
    if section == "A short tour":
        assert namespace["big"].table.target_met.all() and "satisfied" in out.lower()
    if section.startswith("Studies"):
        assert "identical" in out
    # Last, as it may end the test as an expected failure (see the helper).
    try:
        for i, call in enumerate(_inline_plot_calls(section)):
            ax = eval(call, namespace)  # noqa: S307 (the README's own line)
            level = f"{100 * namespace['res'].confidence:.4g}%"
            _figure_fits_and_states_the_level(ax.figure, tmp_path / f"inline-{i}.png", level)
    finally:
        plt.close("all")
