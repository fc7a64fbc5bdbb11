"""The cross-generator study's table (`cifake study`), as Markdown: the README of the study
folder, and the section the dataset card and each detector's model card show."""

from __future__ import annotations

from typing import Any


def _label(det: dict[str, Any]) -> str:
    if det["left_out"] is not None:
        chosen = det.get("selected_on")
        return f"all but `{det['left_out']}`" + (f" (epoch chosen on `{chosen}`)" if chosen else "")
    return " + ".join(f"`{g}`" for g in det["trained_on"])


def _auc(score: dict[str, Any]) -> str:
    if score["roc_auc"] is None:
        return "n/a"
    low, high = score.get("roc_auc_low"), score.get("roc_auc_high")
    interval = f" ({low:.3f}-{high:.3f})" if low is not None and high is not None else ""
    return f"{score['roc_auc']:.3f}{interval}"


def left_out_table(record: dict[str, Any]) -> str | None:
    """Per left-out family: the detector's ROC AUC (95% bootstrap interval) and accuracy on
    the family it never saw, and its mean AUC on the generators it trained on; None when the
    study has no leave-one-family-out detector."""
    lines = []
    for det in record["detectors"]:
        if det["left_out"] is None:
            continue
        mine = [s for s in record["scores"] if s["detector"] == det["name"]]
        unseen = [s for s in mine if s["role"] == "unseen"]
        trained = [s["roc_auc"] for s in mine if s["role"] == "trained" and s["roc_auc"]]
        mean = f"{sum(trained) / len(trained):.3f}" if trained else "n/a"
        for s in unseen:
            lines.append(
                f"| `{det['left_out']}` | `{s['tested_on']}` | `{det.get('selected_on') or '-'}` "
                f"| {_auc(s)} | {s['accuracy']:.1%} | {mean} |"
            )
    if not lines:
        return None
    return "\n".join(
        [
            "| family left out | tested on | epoch chosen on | ROC AUC (95% interval) | "
            "accuracy | mean AUC, trained generators |",
            "|---|---|---|---:|---:|---:|",
            *lines,
        ]
    )


def study_table(record: dict[str, Any]) -> str:
    """The train x test matrix (accuracy / ROC AUC; bold: a generator the detector saw in
    training) and the seen/unseen means."""
    tests = record["generators"]
    cell = {(s["detector"], s["tested_on"]): s for s in record["scores"]}
    lines = [
        "| trained on | " + " | ".join(f"tested on `{t}`" for t in tests) + " |",
        "|---|" + "---:|" * len(tests),
    ]
    for det in record["detectors"]:
        cells = []
        for t in tests:
            s = cell[(det["name"], t)]
            auc = "n/a" if s["roc_auc"] is None else f"{s['roc_auc']:.3f}"
            text = f"{s['accuracy']:.1%} / {auc}"
            role = s.get("role", "trained" if s["seen"] else "unseen")
            cells.append({"trained": f"**{text}**", "selection": f"_{text}_"}.get(role, text))
        lines.append(f"| {_label(det)} | " + " | ".join(cells) + " |")
    summary = record["summary"]

    def mean(key: str, pct: bool) -> str:
        value = summary[key]
        return "n/a" if value is None else (f"{value:.1%}" if pct else f"{value:.3f}")

    rows = record["test_rows"]
    sizes = ", ".join(f"`{g}` {n['fake']:,}+{n['real']:,}" for g, n in rows.items())
    return "\n".join(
        [
            *lines,
            "",
            f"Cells: accuracy / ROC AUC of detector `{record['detector']}` on one generator's "
            "FAKE test images against as many REAL test images (a stratified sample, the same "
            f"for every detector; FAKE+REAL per generator: {sizes}). **Bold**: a generator the "
            "detector was trained on; _italics_: one it held out of training to choose its "
            "epoch on.",
            "",
            f"Mean on generators seen in training: accuracy {mean('seen_accuracy', True)}, AUC "
            f"{mean('seen_roc_auc', False)}; on generators never seen: accuracy "
            f"{mean('unseen_accuracy', True)}, AUC {mean('unseen_roc_auc', False)}.",
        ]
    )


def study_card(record: dict[str, Any]) -> str:
    """The README of a study folder."""
    dets = record["detectors"]
    logo = any(d["left_out"] is not None for d in dets)
    how = (
        "Each detector was trained on the FAKE train images of the generators named in its "
        "row and as many REAL train images (a stratified sample), with a validation slice of "
        "those rows for model selection; the test split was used only for the scores below."
    )
    if logo:
        how += (
            ' The rows "all but X" are the leave-one-family-out detectors (a family: a '
            "generator and its aligned twins): their score on X is for a family they never "
            "saw. A detector whose recipe chooses its epoch on an unseen family also held that "
            "family out of training (named in its row)."
        )
    else:
        how += (
            " With two generators, leave-one-generator-out is the matrix's off-diagonal (each "
            "detector never saw the other generator)."
        )
    runs = "\n".join(
        f"- `{d['run']}`: trained on {', '.join(d['trained_on'])} ({d['train_rows']:,} rows)"
        for d in dets
    )
    return (
        "# Cross-generator study\n\n"
        f"Dataset `{record['dataset']}`, generators: "
        + ", ".join(f"`{g}`" for g in record["generators"])
        + f". Detector: `{record['detector']}`.\n\n"
        + how
        + "\n\n"
        + study_table(record)
        + (f"\n\n### Leave one family out\n\n{table}" if (table := left_out_table(record)) else "")
        + "\n\n![Cross-generator matrix](matrix.png)\n\n"
        "Every number is in `study.json` and `matrix.csv` (one line per detector and test "
        "generator). The detectors' run folders (each with its model card):\n\n" + runs + "\n"
    )
