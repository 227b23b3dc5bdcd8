"""What a metric family offers the verdicts of docs/spec.md#verdicts: one `VerdictMetric` per metric it scores.

A verdict metric says which per-unit table of an SAE it reads, which rows (`select`), how its units
pair between the trained SAE and a null (`paired` on the `ids` columns, e.g. the same evaluation
token), and `terms`: the family's own function that turns one SAE's rows into a statistic of resampled
unit indices (with the number of units). Its value on the identity indices is the metric itself, so a verdict's interval resamples
exactly the metric the family reports. The metric also holds its expected direction, its chance level
(the score of a model or SAE that carries no information) and its default tolerance δ, the smallest
difference the verdict counts as real when seed noise was not measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

Statistic = Callable[[np.ndarray], float]
Terms = tuple[int, Statistic]  # (number of units, statistic of a resampled index array over them)


@dataclass(frozen=True)
class VerdictMetric:
    """A metric a verdict is given on (see the module docstring)."""

    name: str  # the metrics-table column holding the SAE's value
    label: str
    direction: int  # +1: trained expected higher; -1: lower; 0: no expected direction
    unit: str  # what is resampled, in words: "token", "window", "latent", "test text", "attribute"
    table: str  # per-unit table: tokens | chunks | latents | scores | probing | editing
    terms: Callable[[pd.DataFrame], Terms | None] = field(compare=False)
    tolerance: float  # default δ when seed noise was not measured (one seed)
    chance: float | None = None  # the metric's value without information; None when it has none
    paired: bool = False  # units are the same items for both SAEs (aligned on `ids`)
    ids: tuple[str, ...] = ()
    select: tuple[tuple[str, Any], ...] = ()  # (column, value) filters of the per-unit table

    def rows(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of one SAE's per-unit table this metric reads."""
        for col, value in self.select:
            if col not in df:
                return df.iloc[:0]
            df = df[df[col] == value]
        return df


def has_columns(df: pd.DataFrame, *columns: str) -> bool:
    """True when `df` has rows and every column is present and fully defined (a statistic can be built)."""
    return len(df) > 0 and all(c in df and df[c].notna().all() for c in columns)
