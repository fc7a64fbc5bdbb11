"""The whole chain on the embedded sample: import -> search (quick preset) -> Grad-CAM -> cards.

Offline, a few minutes on two CPU cores. The same steps with the full inputs are the real
job (see the README). Publishing is not part of it yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SAMPLE = Path(__file__).parent / "data" / "cifake-sample.zip"
QUICK_TOPOLOGY = "conv=32x2,dense=64x1"  # the paper's final choice


@dataclass
class DemoResult:
    dataset: Path
    run: Path
    dataset_card: Path
    model_card: Path
    figure6: Path
    model: Path


def run_demo(out: str | Path, status: Callable[[str], None] = print, epochs: int = 8) -> DemoResult:
    from cifake_hub.cards.dataset_card import write_dataset_card
    from cifake_hub.cards.model_card import write_model_card
    from cifake_hub.explain import GRADCAM_DIR, ExplainConfig, explain_run
    from cifake_hub.kaggle import ImportConfig, import_kaggle
    from cifake_hub.training.search import FINAL_MODEL, SearchConfig, run_search

    out = Path(out)
    dataset, run = out / "cifake-sample", out / "run"
    status(f"1/4 importing the embedded sample into {dataset}")
    import_kaggle(ImportConfig(src=str(SAMPLE), out=str(dataset)), overwrite=True)
    status(f"2/4 training {QUICK_TOPOLOGY} ({epochs} epochs) into {run}")
    run_search(
        dataset,
        run,
        SearchConfig(topology=QUICK_TOPOLOGY, epochs=epochs, batch_size=32),
        on_status=status,
    )
    status("3/4 Grad-CAM and the deletion test on the test split")
    explain_run(run, ExplainConfig(dataset=str(dataset), split="test", n=200))
    status("4/4 dataset and model cards")
    return DemoResult(
        dataset,
        run,
        write_dataset_card(dataset),
        write_model_card(run),
        run / GRADCAM_DIR / "figure6.png",
        run / FINAL_MODEL,
    )
