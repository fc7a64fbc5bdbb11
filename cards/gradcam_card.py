"""The Grad-CAM card of a run folder (``gradcam/README.md``): the method and layer, Figure 6,
the sanity check, the faithfulness test, the paper's reading measured, limitations and
citations. The model card links to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifake_hub.cards.common import TEMPLATES, fmt_change, fmt_interval
from cifake_hub.errors import CifakeError
from cifake_hub.explain.summary import GradcamSummary
from cifake_hub.outputs import atomic_write_text, record_file, writes
from cifake_hub.training.run_folder import RunFolder

TEMPLATE = TEMPLATES / "gradcam_card.md.j2"
CARD = "README.md"
METHOD_NAMES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
}
CITATIONS = """\
@inproceedings{selvaraju2017gradcam,
  title     = {Grad-{CAM}: Visual Explanations from Deep Networks via Gradient-Based Localization},
  author    = {Selvaraju, Ramprasaath R. and Cogswell, Michael and Das, Abhishek and
               Vedantam, Ramakrishna and Parikh, Devi and Batra, Dhruv},
  booktitle = {ICCV},
  year      = {2017}
}

@inproceedings{chattopadhay2018gradcampp,
  title     = {Grad-{CAM}++: Generalized Gradient-Based Visual Explanations for Deep
               Convolutional Networks},
  author    = {Chattopadhay, Aditya and Sarkar, Anirban and Howlader, Prantik and
               Balasubramanian, Vineeth N.},
  booktitle = {WACV},
  year      = {2018}
}

@article{draelos2020hirescam,
  title   = {Use {HiResCAM} instead of {Grad-CAM} for faithful explanations of convolutional
             neural networks},
  author  = {Draelos, Rachel Lea and Carin, Lawrence},
  journal = {arXiv:2011.08891},
  year    = {2020}
}

@article{jiang2021layercam,
  title   = {{LayerCAM}: Exploring Hierarchical Class Activation Maps for Localization},
  author  = {Jiang, Peng-Tao and Zhang, Chang-Bin and Hou, Qibin and Cheng, Ming-Ming and
             Wei, Yunchao},
  journal = {IEEE Transactions on Image Processing},
  volume  = {30},
  pages   = {5875--5888},
  year    = {2021}
}

@inproceedings{rong2022road,
  title     = {A Consistent and Efficient Evaluation Strategy for Attribution Methods},
  author    = {Rong, Yao and Leemann, Tobias and Borisov, Vadim and Kasneci, Gjergji and
               Kasneci, Enkelejda},
  booktitle = {ICML},
  year      = {2022}
}

@inproceedings{adebayo2018sanity,
  title     = {Sanity Checks for Saliency Maps},
  author    = {Adebayo, Julius and Gilmer, Justin and Muelly, Michael and Goodfellow, Ian and
               Hardt, Moritz and Kim, Been},
  booktitle = {NeurIPS},
  year      = {2018}
}"""


def _sanity(sanity: dict[str, Any] | None) -> dict[str, Any] | None:
    if not sanity:
        return None
    results = sanity["results"]
    steps = [
        {"layer": layer, "cells": [f"{r['spearman'][i]:.3f}" for r in results]}
        for i, layer in enumerate(results[0]["steps"])
    ]
    return {**sanity, "steps": steps}


def _claim(claim: dict[str, Any] | None) -> dict[str, Any] | None:
    if not claim:
        return None

    names = {
        "area_above_half": "share of pixels above half the maximum",
        "entropy": "normalised entropy of the map",
        "centre_mass": "share of the map in the central 16x16",
    }
    rows = [
        {
            "name": text,
            "real": fmt_interval(claim["by_label"][key]["REAL"]),
            "fake": fmt_interval(claim["by_label"][key]["FAKE"]),
            "diff": fmt_interval(claim["real_minus_fake"][key]),
        }
        for key, text in names.items()
        if claim.get("by_label")
    ]
    return {"images": claim["images"], "verdict": claim["verdict"], "rows": rows}


def _name(key: str) -> str:
    """``method`` or ``method@layer`` (a ROAD curve's name) in words."""
    method, _, layer = key.partition("@")
    return METHOD_NAMES.get(method, method) + (f" at `{layer}`" if layer else "")


def _choice(chosen: str, layer: str, road: dict[str, Any] | None) -> str:
    if not road or not road.get("best"):
        return f"The method was chosen by the user (`--method {chosen}`); ROAD was not run."
    scores = road["curves"]
    drawn = chosen if chosen in scores else f"{chosen}@{layer}"
    best = road["best"]
    if best == drawn:
        return (
            f"It is the map ROAD finds most faithful here (combined score "
            f"{scores[best]['score']:+.3f}; see Faithfulness)."
        )
    method, _, best_layer = best.partition("@")
    command = f"`cifake explain --method {method}" + (
        f" --layer {best_layer}`" if best_layer else "`"
    )
    return (
        f"The user chose it (`--method {chosen}`, ROAD score {scores[drawn]['score']:+.3f}); "
        f"ROAD finds {_name(best)} more faithful here ({scores[best]['score']:+.3f}): "
        f"{command} draws its maps."
    )


def _road(road: dict[str, Any] | None) -> dict[str, Any] | None:
    if not road:
        return None
    rows = []
    for name, c in sorted(road["curves"].items(), key=lambda kv: -kv[1]["score"]):
        rows.append(
            {
                "name": _name(name),
                "morf": f"{sum(c['morf']) / len(c['morf']):.3f}",
                "lerf": f"{sum(c['lerf']) / len(c['lerf']):.3f}",
                "score": f"{c['score']:+.3f}",
                "baseline": name in ("random", "edges"),
            }
        )
    floor = max(road["curves"][b]["score"] for b in ("random", "edges") if b in road["curves"])
    beaten = [
        _name(n)
        for n, c in road["curves"].items()
        if n not in ("random", "edges") and c["score"] > floor
    ]
    layers = road.get("layers") or [road["layer"]]  # summaries before `--layer all`: one
    return {
        **road,
        "rows": rows,
        "beaten": beaten,
        "noise": f"{road['noise_std']:g}",
        "layers_text": ", ".join(f"`{layer}`" for layer in layers),
    }


def render_gradcam_card(run_dir: str | Path) -> str:
    import jinja2

    run = RunFolder(run_dir)
    summary = GradcamSummary.of_run(run)
    if summary is None:
        raise CifakeError(f"{run.path} has no Grad-CAM results; run `cifake explain` first")
    f = summary.faithfulness
    chosen = summary.config.get("method") or summary.method
    template = jinja2.Template(TEMPLATE.read_text(), keep_trailing_newline=True)
    return template.render(
        title=f"{METHOD_NAMES.get(summary.method, summary.method)} of {run.path.name}",
        method=METHOD_NAMES.get(summary.method, summary.method),
        layer=summary.layer,
        images=summary.images,
        split=summary.split,
        choice=_choice(chosen, summary.layer, summary.road),
        road=_road(summary.road),
        sanity=_sanity(summary.sanity),
        fraction=f"{f['fraction']:.0%}",
        drop_gradcam=fmt_change(f["mean_drop_gradcam"]),
        drop_random=fmt_change(f["mean_drop_random"]),
        claim=_claim(summary.claim),
        citations=CITATIONS,
    )


@writes("run_dir")
def write_gradcam_card(run_dir: str | Path) -> Path:
    """``gradcam/README.md`` of a run folder cifake wrote (recorded in the folder's marker)."""
    run = RunFolder(run_dir).require_ours()
    path = atomic_write_text(run.gradcam_dir / CARD, render_gradcam_card(run.path))
    record_file(run.gradcam_dir, CARD)
    return path
