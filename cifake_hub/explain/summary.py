"""What `cifake explain` did, typed: ``gradcam/summary.json`` of a run folder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cifake_hub.training.run_folder import RunFolder, from_record


@dataclass
class GradcamSummary:
    """``gradcam/summary.json``: what `cifake explain` did and the faithfulness numbers."""

    config: dict[str, Any]
    split: str
    layer: str
    images: int
    accuracy_on_sample: float
    figure6: str  # relative to the run folder
    faithfulness: dict[str, Any]
    method: str = "gradcam"  # summaries written before methods existed are Grad-CAM
    sanity: dict[str, Any] | None = None  # the cascading randomisation check, when run
    claim: dict[str, Any] | None = None  # the paper's "REAL holistic, FAKE sparse", measured
    road: dict[str, Any] | None = None  # ROAD curves and scores per method and baseline

    @classmethod
    def of_run(cls, run: RunFolder) -> GradcamSummary | None:
        """The run's summary (None: `cifake explain` has not run on it)."""
        record = run.gradcam_summary()
        return None if record is None else from_record(cls, record)
