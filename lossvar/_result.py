"""What every result object of lossvar shares: :class:`ConfidenceInterval` and the base
:class:`ResultBase` behind the protocol :class:`lossvar.typing.Result`.

A result has a tidy table (:meth:`ResultBase.to_frame`), a readable text
(:meth:`ResultBase.summary`, which is also its ``str``) and the ``confidence``
its intervals were computed at (None for a result that has no interval). The
protocol is described once, in docs/guide/results.md.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = ["ConfidenceInterval", "ResultBase", "TableResultBase"]


class ConfidenceInterval(NamedTuple):
    """A two-sided confidence interval, in the shape of scipy.stats' results:
    ``low, high = ci``.

    An end is NaN where the interval is undefined (e.g. Fieller's interval of a
    ratio whose denominator is not significantly nonzero) and ``inf`` for a ray.
    The level is the ``confidence`` of the result that holds the interval.
    """

    low: float
    high: float


def _scalar(value: Any) -> bool:
    """A value that is one cell of a table: a number, a string, a bool or None."""
    return value is None or isinstance(value, (numbers.Number, str, np.generic))


class ResultBase:
    """The shared part of every result class (a mixin for frozen dataclasses).

    ``to_frame`` is one row of the dataclass fields that are single values, in
    their order, each :class:`ConfidenceInterval` field ``x`` as the two columns
    ``x_low`` and ``x_high`` (arrays, tables, mappings and tuples are left out);
    a class whose row reads otherwise overrides :meth:`_row`. ``__str__`` is
    :meth:`summary`, which each class writes.
    """

    __slots__ = ()

    def to_frame(self) -> pd.DataFrame:
        """The result as a tidy table (a new DataFrame: changing it leaves the result alone)."""
        return pd.DataFrame([self._row()])

    def _row(self) -> dict:
        row: dict = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, ConfidenceInterval):
                row[f"{f.name}_low"], row[f"{f.name}_high"] = value
            elif _scalar(value):
                row[f.name] = value
        return row

    def summary(self) -> str:
        """A readable account of the result, with its intervals and caveats."""
        raise NotImplementedError

    def __str__(self) -> str:
        return self.summary()


class TableResultBase(ResultBase):
    """The shared part of a result that holds its tidy table in ``table``."""

    __slots__ = ()
    table: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """A copy of ``table`` (its ``attrs`` included)."""
        return self.table.copy()
