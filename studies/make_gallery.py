"""Regenerate the gallery: `python studies/make_gallery.py [--studies LIST] [--workers N]`.

Runs every study of the lecture at the gallery's settings (:data:`PRESET`, root
seed 1, figures at 300 dpi) and writes, for each study NAME:

- ``docs/NAME-FIGURE.png``: its figures, as the README and docs/gallery.md show them;
- ``docs/gallery/NAME/``: the run's ``manifest.json``, ``summary.md`` and CSV tables,
  and ``gallery.json``: the gallery's arguments of the study and every text drawn in
  each figure (titles, labels, legends, annotations, tick labels), read from the SVG
  the study wrote.

``--check`` writes nothing: it reruns each study from the manifest in
docs/gallery/NAME/ and fails (exit 1, "regenerate the gallery: python
studies/make_gallery.py") when a table differs beyond rounding
(:func:`lossvar.results.verify`), when a figure's texts differ from
``gallery.json``, or when the gallery's settings have changed since.
tests/test_gallery.py runs the same check in CI. A change of pure styling (a
colour, a marker) changes no text: regenerate after one.

`--studies critical_batch` regenerates (or checks) only the studies named;
`--workers N` spreads each run's Monte Carlo over processes without changing a
bit. For a result you can cite, run the study itself: the command in each
study's ``summary.md`` (also under each figure in docs/gallery.md) makes the
same tables and figures.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import html
import io
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from lossvar import results, studies

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SEED = 1
DPI = 300
#: Resolution of the check's reruns: the PNGs are not compared (only tables and the
#: texts in the SVGs, which do not depend on it), and small ones render faster.
CHECK_DPI = 50

#: The gallery's settings of each study, beyond ``--seed 1 --dpi 300``: full size (the
#: defaults), except robbins_monro at 1000 runs per schedule instead of 2000 (35 s at
#: full size on 2 cores, the README's own example runs it so), so that the CI check of
#: the whole gallery stays under about six minutes on 2 cores (docs/gallery.md).
PRESET: dict[str, list[str]] = {
    "variance_scaling": [],
    "sgd_vs_batch": [],
    "erm_spread": [],
    "robbins_monro": ["--replicates", "1000"],
    "trend_optimizers": [],
    "critical_batch": [],
}

REGENERATE = "regenerate the gallery: python studies/make_gallery.py"


def gallery_argv(name: str) -> list[str]:
    """The arguments a gallery study runs with (no ``--out``, ``--workers`` or progress)."""
    return ["--seed", str(SEED), "--dpi", str(DPI), *PRESET[name]]


def figure_texts(svg: Path) -> list[str]:
    """Every text drawn in a matplotlib SVG, in drawing order.

    matplotlib writes each text it draws as glyph paths preceded by a comment holding
    the text itself (one per line of a multi-line text); the file's first comment
    names the program and is left out.
    """
    comments = re.findall(r"<!-- (.*?) -->", svg.read_text(encoding="utf-8"), flags=re.S)
    return [html.unescape(c) for c in comments if not c.startswith("Created with matplotlib")]


def _texts_of(folder: Path) -> dict[str, list[str]]:
    return {svg.stem: figure_texts(svg) for svg in sorted(folder.glob("*.svg"))}


def _run(name: str, argv: list[str], out: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):  # "wrote TMP": the folder is temporary
        status = studies.run(name, [*argv, "--out", str(out), "--no-progress"])
    if status:
        raise SystemExit(f"make_gallery: {name} exited with status {status}")


def _set(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag`` set to ``value`` (replaced, or appended)."""
    out = list(argv)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return out


def make(name: str, docs: Path = DOCS, workers: int = 1) -> list[Path]:
    """Run study ``name`` at the gallery's settings; write its PNGs and its folder in ``docs``."""
    folder = docs / "gallery" / name
    with tempfile.TemporaryDirectory(prefix="lossvar-gallery-") as tmp:
        run = Path(tmp) / name
        _run(name, [*gallery_argv(name), "--workers", str(workers)], run)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for f in sorted(run.iterdir()):
            if f.suffix in (".csv", ".json", ".md"):
                shutil.copyfile(f, folder / f.name)
        record = {"argv": gallery_argv(name), "figures": _texts_of(run)}
        (folder / "gallery.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
        written = []
        for png in sorted(run.glob("*.png")):
            written.append(docs / f"{name}-{png.name}")
            shutil.copyfile(png, written[-1])
    return written


def check(name: str, docs: Path = DOCS, workers: int = 1) -> list[str]:
    """What no longer matches between the gallery of study ``name`` and a rerun (empty: current)."""
    folder = docs / "gallery" / name
    try:
        results.read_manifest(folder)
        record = json.loads((folder / "gallery.json").read_text(encoding="utf-8"))
        made_with, stored = record["argv"], record["figures"]
    except (results.ManifestError, OSError, ValueError, KeyError) as exc:
        return [f"{name}: no gallery folder to check ({exc!r})"]
    if made_with != gallery_argv(name):
        return [f"{name}: made with {' '.join(made_with)}, not the gallery's settings now, "
                f"{' '.join(gallery_argv(name))}"]
    rerun_texts: dict[str, list[str]] = {}

    def rerun(study, argv, out):
        fast = _set(_set(argv, "--dpi", str(CHECK_DPI)), "--workers", str(workers))
        try:
            _run(study, fast, out)
        except SystemExit as exc:
            raise results.RerunError(str(exc)) from None
        rerun_texts.update(_texts_of(out))

    report = results.verify(folder, rerun)
    problems = [] if report.ok else [f"{name}: tables\n{report}"]
    for figure in sorted(set(stored) | set(rerun_texts)):
        old, new = stored.get(figure), rerun_texts.get(figure)
        if old != new:
            diff = difflib.unified_diff(old or [], new or [], "gallery", "rerun", n=0, lineterm="")
            problems.append(f"{name}: figure {figure}: its texts differ\n"
                            + "\n".join(list(diff)[2:14]))
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=studies.comma_list(str), default=None, metavar="LIST",
                   help=f"only these studies (default: every one, {','.join(studies.LECTURE)})")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; rerun and compare with the gallery (exit 1 if stale)")
    p.add_argument("docs", nargs="?", default=DOCS, type=Path,
                   help="the documentation folder (default: docs/ of this checkout)")
    args = p.parse_args(argv)
    names = list(studies.LECTURE) if args.studies is None else args.studies
    unknown = sorted(set(names) - set(studies.LECTURE))
    if unknown:
        p.error(f"--studies: unknown {unknown}; the gallery's studies are: {', '.join(studies.LECTURE)}")
    if args.check:
        problems = [line for name in names for line in check(name, args.docs, args.workers)]
        for line in problems:
            print(line, file=sys.stderr)
        print(f"make_gallery: {REGENERATE}" if problems else "make_gallery: the gallery is current")
        return 1 if problems else 0
    for name in names:
        for path in make(name, args.docs, args.workers):
            print(f"  {path}")
        print(f"  {args.docs / 'gallery' / name}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
