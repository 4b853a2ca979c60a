"""Run the variance_scaling study from a checkout: `python studies/variance_scaling.py [options]`.

The study lives in lossvar/studies/variance_scaling.py (installed with the package, so
`lossvar run variance_scaling` does the same after `pip install .`).
"""

from lossvar.studies.variance_scaling import main

if __name__ == "__main__":
    raise SystemExit(main())
