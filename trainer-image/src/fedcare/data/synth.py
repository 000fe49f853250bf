"""Synthetic, non-IID hospital readmission data for demos, tests and benchmarks.

Each site gets its own patient mix (age, BMI, comorbidity burden, emergency share) and its own
baseline readmission rate; the label ``readmitted`` is drawn from a logistic model of the
features, so a model can learn it (AUROC of the true model around 0.75).

The survival mode (``task="survival"``) keeps the features and replaces the label with a time
to event in days and an event flag: times are Weibull (shape 1.3) with a proportional hazard
``exp(linear predictor + site shift)``, so a Cox model fits it (C-index of the true risk score
around 0.7); follow-up ends at a random dropout time or after 5 years (censoring: 20 to 45%
of rows, by site). Times are whole days, so ties occur.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.csv as pacsv  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

SYNTH_FEATURES: tuple[str, ...] = (
    "age",
    "sex",
    "num_comorbidities",
    "num_medications",
    "hba1c",
    "creatinine",
    "systolic_bp",
    "bmi",
    "length_of_stay",
    "prior_admissions",
    "emergency_admission",
)
SYNTH_LABEL = "readmitted"
SYNTH_FORMATS = ("csv", "parquet")
#: Columns of the survival mode: days to the event or to censoring, and 1 = event observed.
SYNTH_TIME = "time"
SYNTH_EVENT = "event"
SYNTH_TASKS = ("binary-classification", "survival")

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class _SiteProfile:
    """How one site's population differs from the others."""

    age_mean: float
    female_share: float
    comorbidity_scale: float
    bmi_mean: float
    emergency_share: float
    intercept: float


def _profile(position: float, rng: np.random.Generator) -> _SiteProfile:
    """A site's profile; ``position`` in [0, 1] spreads the sites apart, ``rng`` jitters."""
    return _SiteProfile(
        age_mean=50.0 + 18.0 * position + rng.normal(0.0, 2.0),
        female_share=float(np.clip(0.5 + rng.normal(0.0, 0.04), 0.35, 0.65)),
        comorbidity_scale=float(np.exp(rng.normal(0.0, 0.15))),
        bmi_mean=26.5 + 3.0 * rng.random(),
        emergency_share=0.2 + 0.35 * ((position * 7.0 + rng.random()) % 1.0),
        intercept=-1.9 + 0.9 * position + rng.normal(0.0, 0.08),
    )


def _site_columns(p: _SiteProfile, rows: int, rng: np.random.Generator) -> dict[str, F64]:
    """Features and label of one site, vectorized."""
    age = np.clip(rng.normal(p.age_mean, 15.0, rows), 18.0, 95.0).round()
    sex = (rng.random(rows) < p.female_share).astype(np.float64)
    lam = p.comorbidity_scale * np.exp(0.2 + 0.03 * (age - 60.0))
    comorb = rng.poisson(lam).astype(np.float64)
    meds = rng.poisson(1.5 + 1.2 * comorb).astype(np.float64)
    hba1c = np.clip(rng.normal(5.6 + 0.25 * comorb, 0.9), 4.0, 14.0).round(1)
    creat = rng.lognormal(np.log(0.85) + 0.004 * (age - 60.0) + 0.06 * comorb, 0.3).round(2)
    sbp = np.clip(rng.normal(120.0 + 0.4 * (age - 50.0), 17.0), 80.0, 220.0).round()
    bmi = np.clip(rng.normal(p.bmi_mean, 5.5, rows), 15.0, 60.0).round(1)
    emerg = (rng.random(rows) < p.emergency_share).astype(np.float64)
    los = 1.0 + rng.poisson(2.0 + 1.5 * emerg + 0.4 * comorb).astype(np.float64)
    prior = rng.poisson(0.3 + 0.25 * comorb + 0.3 * emerg).astype(np.float64)
    logit = (
        p.intercept
        + 0.022 * (age - 60.0)
        - 0.10 * sex
        + 0.18 * (comorb - 1.5)
        + 0.03 * (meds - 3.0)
        + 0.15 * (hba1c - 6.0)
        + 0.45 * (creat - 1.0)
        + 0.004 * (sbp - 125.0)
        + 0.012 * (bmi - 27.0)
        + 0.07 * (los - 4.0)
        + 0.35 * prior
        + 0.45 * emerg
        - 0.3
    )
    label = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float64)
    values = (age, sex, comorb, meds, hba1c, creat, sbp, bmi, los, prior, emerg)
    cols = dict(zip(SYNTH_FEATURES, values, strict=True))
    cols[SYNTH_LABEL] = label
    return cols


_INTEGER_COLUMNS = frozenset(
    {
        "age",
        "sex",
        "num_comorbidities",
        "num_medications",
        "systolic_bp",
        "length_of_stay",
        "prior_admissions",
        "emergency_admission",
        SYNTH_LABEL,
        SYNTH_TIME,
        SYNTH_EVENT,
    }
)


def _survival_columns(
    cols: dict[str, F64], p: _SiteProfile, rows: int, rng: np.random.Generator
) -> dict[str, F64]:
    """Replace the label of ``cols`` by Weibull times to event (days) with censoring."""
    hazard = (
        0.03 * (cols["age"] - 60.0)
        - 0.15 * cols["sex"]
        + 0.25 * (cols["num_comorbidities"] - 1.5)
        + 0.15 * (cols["hba1c"] - 6.0)
        + 0.5 * (cols["creatinine"] - 1.0)
        + 0.3 * cols["prior_admissions"]
        + 0.4 * cols["emergency_admission"]
        + (p.intercept + 1.9)  # the site's baseline hazard: 0 to about 0.9
    )
    shape, scale_days = 1.3, 3.0 * 365.0
    u = 1.0 - rng.random(rows)  # in (0, 1]
    event_time = scale_days * (-np.log(u) * np.exp(-hazard)) ** (1.0 / shape)
    censor_time = np.minimum(rng.exponential(6.0 * 365.0, rows), 5.0 * 365.0)
    out = {k: v for k, v in cols.items() if k != SYNTH_LABEL}
    out[SYNTH_TIME] = np.maximum(np.ceil(np.minimum(event_time, censor_time)), 1.0)
    out[SYNTH_EVENT] = (event_time <= censor_time).astype(np.float64)
    return out


def _to_table(cols: dict[str, F64]) -> pa.Table:
    """Integer-valued columns as int32 (short CSV cells), the rest as float64."""
    arrays = {
        name: pa.array(v.astype(np.int32) if name in _INTEGER_COLUMNS else v)
        for name, v in cols.items()
    }
    return pa.table(arrays)


def synthesize(
    sites: int,
    rows: int,
    out_dir: Path,
    fmt: str = "csv",
    seed: int = 0,
    task: str = "binary-classification",
) -> list[Path]:
    """Write ``site-1.<fmt>`` ... ``site-<sites>.<fmt>`` with ``rows`` rows each into ``out_dir``.

    ``fmt`` is ``"csv"`` or ``"parquet"``. Columns are :data:`SYNTH_FEATURES` then
    :data:`SYNTH_LABEL` (0/1), or, with ``task="survival"``, :data:`SYNTH_TIME` (days) and
    :data:`SYNTH_EVENT` (0/1). Output is a function of ``(sites, rows, seed, task)``. Returns
    the paths written, in site order.
    """
    if fmt not in SYNTH_FORMATS:
        raise ValueError(f"fmt must be one of {SYNTH_FORMATS}, got {fmt!r}")
    if task not in SYNTH_TASKS:
        raise ValueError(f"task must be one of {SYNTH_TASKS}, got {task!r}")
    if sites < 1 or rows < 1:
        raise ValueError(f"sites and rows must be at least 1, got sites={sites}, rows={rows}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for k in range(sites):
        rng = np.random.default_rng([seed, k])
        profile = _profile(k / max(sites - 1, 1), rng)
        cols = _site_columns(profile, rows, rng)
        if task == "survival":
            cols = _survival_columns(cols, profile, rows, rng)
        table = _to_table(cols)
        path = out_dir / f"site-{k + 1}.{fmt}"
        if fmt == "parquet":
            pq.write_table(table, path)
        else:
            pacsv.write_csv(table, path)
        paths.append(path)
    return paths
