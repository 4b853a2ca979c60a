"""Reading progress bars back from what tqdm wrote (shared by the tests)."""

import re


def bars(text):
    """The final state of each progress bar in ``text``, in order (tqdm draws a bar
    after a carriage return and ends it with a newline when it closes); other lines
    (warnings) are not bars."""
    return [line.split("\r")[-1] for line in text.split("\n") if line.startswith("\r")]


def full_bars(text):
    """The labels of the bars of ``text``, each of which must have ended full, at 100%."""
    out = []
    for bar in bars(text):
        match = re.fullmatch(r"lossvar: (.+): 100%\|(#{10}|\u2588{10})\| \[.*\]", bar)
        assert match, f"a bar that did not end full: {bar!r}"
        out.append(match.group(1))
    return out
