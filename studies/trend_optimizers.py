"""Run the trend_optimizers study from a checkout: `python studies/trend_optimizers.py [options]`.

The study lives in lossvar/studies/trend_optimizers.py (installed with the package, so
`lossvar run trend_optimizers` does the same after `pip install .`).
"""

from lossvar.studies.trend_optimizers import main

if __name__ == "__main__":
    raise SystemExit(main())
