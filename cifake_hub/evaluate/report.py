"""`cifake evaluate`'s report, typed: what ``evaluation.json`` holds, and its one table.

The command line, the model and detector cards, the app and the plots read a report through
:class:`EvaluationReport`; :meth:`EvaluationReport.table` is the one place that formats its
conditions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cifake_hub.formatting import fmt_pct
from cifake_hub.training.run_folder import RunFolder

Scores = dict[str, Any]  # metric name -> value (None where undefined)


@dataclass(frozen=True)
class ConditionScore:
    """One condition's scores (``drop``: clean minus this condition)."""

    name: str
    definition: str
    kind: str
    severity: float | None
    metrics: Scores
    drop: Scores = field(default_factory=dict)
    interval_95: dict[str, list[float | None]] = field(default_factory=dict)
    metrics_without_leaked: Scores | None = None

    @classmethod
    def from_dict(cls, name: str, record: dict[str, Any]) -> ConditionScore:
        return cls(
            name,
            record["definition"],
            record["kind"],
            record.get("severity"),
            record["metrics"],
            record.get("drop", {}),
            record.get("interval_95", {}),
            record.get("metrics_without_leaked"),
        )


@dataclass(frozen=True)
class ConditionRow:
    """A condition as every table shows it (the CLI, the cards, the app)."""

    name: str
    definition: str
    accuracy: str
    interval: str
    auc: str
    drop: str
    recall_real: str
    recall_fake: str


@dataclass(frozen=True)
class EvaluationReport:
    record: dict[str, Any]  # evaluation.json as written
    conditions: dict[str, ConditionScore]

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> EvaluationReport:
        conditions = {n: ConditionScore.from_dict(n, c) for n, c in record["conditions"].items()}
        return cls(record, conditions)

    @classmethod
    def of_run(cls, run: RunFolder) -> EvaluationReport | None:
        """The report in the run folder's ``evaluation/`` (None: not evaluated)."""
        record = run.evaluation()
        return None if record is None else cls.from_dict(record)

    @property
    def split(self) -> str:
        return str(self.record["split"])

    @property
    def rows(self) -> int:
        return int(self.record["rows"])

    @property
    def dataset(self) -> str:
        return str(self.record.get("dataset", ""))

    @property
    def calibration(self) -> dict[str, Any]:
        return dict(self.record["calibration"])

    @property
    def per_class(self) -> dict[str, Any]:
        return dict(self.record["per_class"])

    @property
    def per_generator(self) -> dict[str, Any]:
        """Per generator: its FAKE rows against every REAL row (empty with one generator)."""
        return dict(self.record.get("per_generator") or {})

    @property
    def resamples(self) -> int:
        return int(self.record["config"]["bootstrap"])

    @property
    def leaked_rows(self) -> int:
        return int(self.record["leakage"]["rows_also_in_train"])

    @property
    def clean(self) -> ConditionScore:
        return self.conditions["clean"]

    @property
    def threshold(self) -> float | None:
        """The operating threshold on P(REAL) fitted on the validation slice (None: none)."""
        value = self.record["calibration"].get("threshold")
        return None if value is None else float(value)

    def table(self) -> list[ConditionRow]:
        rows = []
        for name, c in self.conditions.items():
            m = c.metrics
            low, high = c.interval_95.get("accuracy", [None, None])
            rows.append(
                ConditionRow(
                    name=name,
                    definition=c.definition,
                    accuracy=fmt_pct(m["accuracy"]),
                    interval="" if low is None else f"{fmt_pct(low)}-{fmt_pct(high)}",
                    auc="n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.4f}",
                    drop="" if name == "clean" else fmt_pct(c.drop.get("accuracy")),
                    recall_real=fmt_pct(m["recall_real"]),
                    recall_fake=fmt_pct(m["recall_fake"]),
                )
            )
        return rows

    def calibration_line(self) -> str:
        """ECE and Brier before scaling; the temperature, ECE after and the threshold."""
        cal = self.calibration
        line = f"ECE {cal['before']['ece']:.4f}, Brier {cal['before']['brier']:.4f}"
        if "after" in cal:
            line += (
                f"; temperature {cal['temperature']:.3f}: ECE {cal['after']['ece']:.4f}; "
                f"threshold {cal['threshold']:.3f} (validation): accuracy "
                f"{fmt_pct(cal['accuracy_at_threshold'])}"
            )
        return line

    def clean_without_leaked(self) -> float | None:
        without = self.clean.metrics_without_leaked
        return None if without is None else without["accuracy"]
