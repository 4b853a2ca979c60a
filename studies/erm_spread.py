"""Run the erm_spread study from a checkout: `python studies/erm_spread.py [options]`.

The study lives in lossvar/studies/erm_spread.py (installed with the package, so
`lossvar run erm_spread` does the same after `pip install .`).
"""

from lossvar.studies.erm_spread import main

if __name__ == "__main__":
    raise SystemExit(main())
