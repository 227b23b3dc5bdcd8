"""The side-by-side report: verdicts (docs/spec.md#verdicts), paper-style figures and one self-contained HTML file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nullsae.report.tables import ResultTables
from nullsae.report.verdicts import Finding, Verdict, compute_verdicts, paper_findings


@dataclass
class Report:
    path: Path
    verdicts: list[Verdict]
    findings: list[Finding]
    figures: dict[str, Path]


def build_report(
    t: ResultTables,
    out_dir: Path,
    title: str,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    examples_per_variant: int = 4,
    notes: list[str] | None = None,
    saes: list[dict[str, Any]] | None = None,
) -> Report:
    """Verdicts, findings and figures from the tables, written as `out_dir/report.html` (+ figures/*.png).
    `saes`: the run's SAEs (`nullsae ls` rows, paths relative to the run folder), listed in the report."""
    from nullsae.families import chance_levels
    from nullsae.io_utils import write_text
    from nullsae.report.figures import make_figures
    from nullsae.report.html import render

    out_dir = Path(out_dir)
    verdicts = compute_verdicts(t, n_boot=n_boot, seed=seed, level=level)
    findings = paper_findings(t)
    figures = make_figures(t, out_dir / "figures", chance_levels(t.units))
    path = write_text(out_dir / "report.html", render(t, verdicts, findings, figures, title, notes, examples_per_variant, saes))
    return Report(path, verdicts, findings, figures)


__all__ = ["Report", "ResultTables", "build_report"]
