"""Regenerate the README gallery: `python studies/make_gallery.py [--quick] [--seed S] [DIR]`.

Runs every study (full sizes unless --quick) into a temporary folder with
figures at print resolution (--dpi 300) and copies each PNG to DIR (default docs/) as
NAME-FIGURE.png: variance_scaling, sgd_vs_batch, erm_spread, robbins_monro,
trend_optimizers and critical_batch (its one_step, steps_examples and
gradient_variance figures, about 2 minutes of CPU at full size). `--studies
critical_batch` regenerates only the figures of the studies named. The study
folders themselves are discarded; run a study with `lossvar run NAME` for
citable results.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

from lossvar import studies


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?", default="docs", type=Path, help="gallery folder (docs/)")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds per study)")
    p.add_argument("--seed", type=int, default=1, help="root seed of every study (default 1)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--studies", type=studies.comma_list(str), default=None, metavar="LIST",
                   help="only these studies, e.g. critical_batch (default: every study, "
                        f"{','.join(studies.names())})")
    args = p.parse_args(argv)
    names = studies.names() if args.studies is None else args.studies
    unknown = sorted(set(names) - set(studies.names()))
    if unknown:
        p.error(f"unknown studies {unknown}; the studies are: {', '.join(studies.names())}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lossvar-gallery-") as tmp:
        for name in names:
            folder = Path(tmp) / name
            argv = ["--seed", str(args.seed), "--workers", str(args.workers), "--dpi", "300",
                    "--out", str(folder)] + (["--quick"] if args.quick else [])
            status = studies.run(name, argv)
            if status:
                return status
            for png in sorted(folder.glob("*.png")):
                shutil.copyfile(png, args.out / f"{name}-{png.name}")
                print(f"  {args.out / f'{name}-{png.name}'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
