"""Run the robbins_monro study from a checkout: `python studies/robbins_monro.py [options]`.

The study lives in lossvar/studies/robbins_monro.py (installed with the package, so
`lossvar run robbins_monro` does the same after `pip install .`).
"""

from lossvar.studies.robbins_monro import main

if __name__ == "__main__":
    raise SystemExit(main())
