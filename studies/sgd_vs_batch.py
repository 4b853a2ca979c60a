"""Run the sgd_vs_batch study from a checkout: `python studies/sgd_vs_batch.py [options]`.

The study lives in lossvar/studies/sgd_vs_batch.py (installed with the package, so
`lossvar run sgd_vs_batch` does the same after `pip install .`).
"""

from lossvar.studies.sgd_vs_batch import main

if __name__ == "__main__":
    raise SystemExit(main())
