"""Run the critical_batch study from a checkout: `python studies/critical_batch.py [options]`.

The study lives in lossvar/studies/critical_batch.py (installed with the package, so
`lossvar run critical_batch` does the same after `pip install .`).
"""

from lossvar.studies.critical_batch import main

if __name__ == "__main__":
    raise SystemExit(main())
