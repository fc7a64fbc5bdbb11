"""The browser app (`cifake app`, and a Space's ``app.py``): upload images, see each detector's
P(FAKE), where it looks, how its answer moves under JPEG/blur/resize/noise, and the robustness
its card reports.

A thin layer: images are read and predicted by :func:`cifake_hub.predict.predict_files` (the
decoding, checks and errors of `cifake predict`), maps come from
:func:`cifake_hub.explain.gradcam.gradcam`, the "what if" images from `cifake evaluate`'s
conditions, and the model tab from the detector's ``evaluation/`` folder and card, never
recomputed. The functions below return plain values; :func:`build_app` wires them to Gradio.
"""

from __future__ import annotations

import re
import socket
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.config import Config, option
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.evaluate.conditions import DEFAULT_CONDITIONS, parse_conditions
from cifake_hub.evaluate.report import EvaluationReport
from cifake_hub.explain.gradcam import METHODS
from cifake_hub.predict import Prediction, predict_files
from cifake_hub.schema import LABEL_NAMES
from cifake_hub.shipped import DETECTORS, SAMPLE

APP_DETECTORS = tuple(name for name in DETECTORS if name != "paper")
LOCALHOST = "127.0.0.1"
ZOOM = 4  # 32x32 images are shown 128x128 (nearest), so a pixel stays a pixel
EXAMPLES = 4  # images per label taken from the embedded sample
MAX_UPLOAD = "32mb"


@dataclass(frozen=True)
class AppConfig(Config):
    model: tuple[str, ...] = option(
        APP_DETECTORS,
        "detector to load: a shipped name, run folder, .keras file or Hub model id",
        metavar="MODEL",
    )
    host: str = option(
        LOCALHOST, "address to listen on; another than 127.0.0.1 exposes the app to the network"
    )
    port: int = option(7860, "port to listen on (0: any free port)")

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("give at least one --model")
        if len(set(self.model)) != len(self.model):
            raise ConfigError(f"--model given twice: {list(self.model)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}")
        if not self.host.strip():
            raise ConfigError("--host is empty; give an address such as 127.0.0.1")


@dataclass
class Detector:
    """A loaded detector and what its folder says about it."""

    name: str
    model: Any
    threshold: float  # P(REAL) at or above which an image is called REAL
    threshold_note: str
    evaluation: EvaluationReport | None = None
    folder: Path | None = None

    def label(self, probability_real: float) -> str:
        return LABEL_NAMES[int(probability_real >= self.threshold)]


def load_detectors(specs: Sequence[str]) -> list[Detector]:
    """Each ``--model`` spec (as `cifake predict` takes it) loaded, with its calibrated
    threshold when `cifake evaluate` fitted one, else 0.5."""
    from cifake_hub.training.models import load_model, resolve_model
    from cifake_hub.training.run_folder import RunFolder

    detectors = []
    for spec in specs:
        path = resolve_model(spec)
        folder = path.parent if path.name == RunFolder.MODEL else None
        evaluation = EvaluationReport.of_run(RunFolder(folder)) if folder is not None else None
        fitted = evaluation.threshold if evaluation is not None else None
        if fitted is not None:
            threshold = fitted
            note = "the threshold `cifake evaluate` fitted on the validation slice"
        else:
            threshold, note = 0.5, "0.5 (no calibrated threshold in the model's evaluation/)"
        name = Path(spec).name if Path(spec).exists() else str(spec)
        detectors.append(Detector(name, load_model(path), threshold, note, evaluation, folder))
    return detectors


def check_port(host: str, port: int) -> None:
    """Refuse a port another program holds, before the models load."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise CifakeError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port, or "
                "--port 0 for any free one"
            ) from exc


# -- analysis: plain values -------------------------------------------------------------------
@dataclass
class Analysis:
    """Every uploaded file's row, and the 32x32 pixels of the readable ones."""

    names: list[str]
    predictions: dict[str, list[Prediction]]  # detector name -> one row per file
    pixels: np.ndarray  # (K, 32, 32, 3) uint8: what the models saw
    readable: list[int]  # file index of each row of ``pixels``
    errors: list[str] = field(default_factory=list)

    def records(self, detectors: Sequence[Detector]) -> list[dict[str, Any]]:
        """One JSON-ready record per file (what the API returns)."""
        out = []
        for i, name in enumerate(self.names):
            first = self.predictions[detectors[0].name][i]
            record: dict[str, Any] = {"file": name, "error": first.error, "resized": first.resized}
            record["detectors"] = {
                d.name: None
                if self.predictions[d.name][i].probability_real is None
                else {
                    "p_fake": 1.0 - float(self.predictions[d.name][i].probability_real or 0.0),
                    "label": self.predictions[d.name][i].label,
                    "threshold_p_real": d.threshold,
                }
                for d in detectors
            }
            out.append(record)
        return out


def analyse(
    detectors: Sequence[Detector],
    files: Sequence[str | Path],
    progress: Callable[[float, str], None] = lambda done, what: None,
) -> Analysis:
    """Every detector's prediction for every file, through `cifake predict`'s own path."""
    paths = [Path(f) for f in files]
    predictions: dict[str, list[Prediction]] = {}
    pixels, readable = np.zeros((0, 32, 32, 3), np.uint8), list[int]()
    for k, det in enumerate(detectors):
        progress(k / len(detectors), f"{det.name}: {len(paths)} image(s)")
        rows, pixels, readable = predict_files(det.model, paths, det.threshold)
        predictions[det.name] = rows
    progress(1.0, "done")
    first = predictions[detectors[0].name]
    errors = [f"{display_name(r.path)}: {r.error}" for r in first if r.error]
    return Analysis([display_name(p) for p in paths], predictions, pixels, readable, errors)


def display_name(path: str | Path) -> str:
    # Uploads keep their own names inside Gradio's per-upload folder.
    return Path(path).name


def zoom(image: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(image, ZOOM, axis=0), ZOOM, axis=1)


def results_table(analysis: Analysis, detectors: Sequence[Detector]) -> list[list[Any]]:
    """Rows for the page: file, then P(FAKE) and label per detector (or the file's error)."""
    rows = []
    for i, name in enumerate(analysis.names):
        row: list[Any] = [name]
        for det in detectors:
            p = analysis.predictions[det.name][i]
            if p.probability_real is None:
                row += ["", p.error]
            else:
                row += [f"{1 - p.probability_real:.4f}", p.label]
        rows.append(row)
    return rows


def table_headers(detectors: Sequence[Detector]) -> list[str]:
    return ["file"] + [h for d in detectors for h in (f"{d.name} P(FAKE)", f"{d.name} label")]


def cam_overlays(
    detector: Detector, analysis: Analysis, method: str
) -> list[tuple[np.ndarray, str]]:
    """(overlay, caption) per readable image for the detector and CAM method."""
    from cifake_hub.explain.gradcam import gradcam
    from cifake_hub.explain.render import overlay

    if not len(analysis.pixels):
        return []
    cam = gradcam(detector.model, analysis.pixels, method=method)
    out = []
    for k, i in enumerate(analysis.readable):
        p = analysis.predictions[detector.name][i]
        caption = f"{analysis.names[i]}: {p.label}, P(FAKE) {1 - (p.probability_real or 0):.3f}"
        out.append((zoom(overlay(analysis.pixels[k], cam.heatmaps[k])), caption))
    return out


def what_if(
    detectors: Sequence[Detector], image: np.ndarray
) -> tuple[list[tuple[np.ndarray, str]], list[list[Any]]]:
    """The image under each of `cifake evaluate`'s default conditions, and every detector's
    P(FAKE) on each: (gallery items, table rows)."""
    conditions = parse_conditions(DEFAULT_CONDITIONS)
    one = np.asarray(image, np.uint8)[None]
    changed = np.concatenate([c.apply(one, np.zeros(1, np.int64)) for c in conditions])
    p_fake = {
        d.name: 1.0 - d.model.predict(changed, batch_size=len(changed), verbose=0).ravel()
        for d in detectors
    }
    gallery = [(zoom(changed[k]), c.name) for k, c in enumerate(conditions)]
    rows = [
        [c.name]
        + [v for d in detectors for v in (f"{p_fake[d.name][k]:.4f}", label_of(d, p_fake, k))]
        + [c.definition]
        for k, c in enumerate(conditions)
    ]
    return gallery, rows


def label_of(detector: Detector, p_fake: dict[str, np.ndarray], k: int) -> str:
    return detector.label(1.0 - float(p_fake[detector.name][k]))


ROBUSTNESS_HEADERS = ["condition", "accuracy", "95% interval", "ROC AUC", "accuracy drop",
                      "definition"]  # fmt: skip


def robustness_rows(evaluation: EvaluationReport) -> list[list[str]]:
    """The card's robustness table (:meth:`EvaluationReport.table`)."""
    return [
        [r.name, r.accuracy, r.interval, r.auc, r.drop, r.definition] for r in evaluation.table()
    ]


def model_summary(detector: Detector) -> str:
    """A few lines on the detector: its threshold and what its evaluation was run on."""
    lines = [f"### {detector.name}", f"Threshold on P(REAL): {detector.threshold:.4f}, "
             f"{detector.threshold_note}."]  # fmt: skip
    evaluation = detector.evaluation
    if evaluation is None:
        lines.append("No `evaluation/` in this model's folder: run `cifake evaluate` on it.")
        return "\n\n".join(lines)
    calibration = evaluation.calibration
    lines.append(
        f"Evaluated on {evaluation.rows:,} rows of the `{evaluation.split}` "
        f"split of `{evaluation.dataset}`."
        + (f" {calibration['note'][0].upper()}{calibration['note'][1:]}." if "note" in calibration
           else "")
    )  # fmt: skip
    return "\n\n".join(lines)


def card_text(detector: Detector) -> str:
    """The detector's card without its YAML header and pictures (their links are relative
    to the model folder)."""
    card = detector.folder / "README.md" if detector.folder is not None else None
    if card is None or not card.is_file():
        return "No card in this model's folder."
    text = card.read_text(encoding="utf-8", errors="replace")
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    return re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)


def robustness_plot(detector: Detector) -> Path | None:
    if detector.folder is None:
        return None
    plot = detector.folder / "evaluation" / "robustness.png"
    return plot if plot.is_file() else None


def sample_examples(out: Path, per_label: int = EXAMPLES) -> list[Path]:
    """A few images of the embedded sample (Kaggle CIFAKE train: the shipped detectors
    trained on them), copied into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    picked = []
    with zipfile.ZipFile(SAMPLE) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        for label in LABEL_NAMES:
            of_label = [n for n in names if n.startswith(f"train/{label}/")]
            chosen = of_label[:: max(1, len(of_label) // per_label)][:per_label]
            for n in chosen:
                target = out / f"{label.lower()}-{Path(n).name}"
                target.write_bytes(archive.read(n))
                picked.append(target)
    return picked


# -- the page ---------------------------------------------------------------------------------
INTRO = (
    "# Is this image generated?\n"
    "Drop one or many images. Each detector gives P(FAKE) and a label at its calibrated "
    "threshold; the CAM shows where it looked. Images that are not 32x32 are resized to "
    "32x32 (RGB, bilinear) first, as the training data was: the gallery shows what the model "
    "sees. Nothing you upload leaves this machine."
)


def build_app(detectors: Sequence[Detector], workdir: Path) -> Any:
    """The Gradio Blocks app over ``detectors``; examples are copied into ``workdir``."""
    import gradio as gr

    names = [d.name for d in detectors]
    examples = sample_examples(workdir / "examples")
    detect, recam, explore = _handlers(detectors)
    with gr.Blocks(title="cifake: is this image generated?") as demo:
        gr.Markdown(INTRO)
        state = gr.State(None)
        with gr.Tab("Detect"):
            files = gr.File(
                file_count="multiple", label="Images (drop one or many)", elem_id="upload"
            )
            with gr.Row():
                cam_name = gr.Dropdown(names, value=names[0], label="CAM of detector")
                method = gr.Radio(
                    list(METHODS), value="gradcam", label="CAM method", elem_id="cam-method"
                )
            button = gr.Button("Detect", variant="primary", elem_id="detect")
            status = gr.Markdown(elem_id="status")
            table = gr.Dataframe(
                headers=table_headers(detectors), label="Predictions", elem_id="results",
                interactive=False,
            )  # fmt: skip
            with gr.Row():
                seen = gr.Gallery(label="What the model sees (32x32)", columns=6, elem_id="seen")
                cams = gr.Gallery(label="Where it looks (CAM overlay)", columns=6, elem_id="cams")
            records = gr.JSON(visible=False)
            example_list = gr.Examples(
                [[[str(p)]] for p in examples],
                inputs=[files],
                cache_examples=False,
                elem_id="examples",
                label="Examples from the embedded sample (CIFAKE train: the shipped detectors "
                "trained on these)",
            )
        pick, changed, answers = _what_if_tab(detectors)
        _model_tab(detectors)
        outputs = [status, table, seen, cams, records, state, pick]
        inputs = [files, cam_name, method]
        button.click(detect, inputs, outputs, api_name="detect")
        files.upload(detect, inputs, outputs, api_visibility="private")
        example_list.load_input_event.then(detect, inputs, outputs, api_visibility="private")
        method.change(recam, [state, cam_name, method], [cams], api_visibility="private")
        cam_name.change(recam, [state, cam_name, method], [cams], api_visibility="private")
        pick.change(explore, [state, pick], [changed, answers], api_visibility="private")
    return demo


def _handlers(detectors: Sequence[Detector]) -> tuple[Callable[..., Any], ...]:
    """The app's event handlers: detect (the uploads), recam (another CAM) and explore (the
    what-if conditions on one image)."""
    import gradio as gr

    names = [d.name for d in detectors]
    by_name = {d.name: d for d in detectors}

    def detect(files: list[str] | None, cam_name: str, method: str, progress=gr.Progress()):  # noqa: B008
        if not files:
            raise gr.Error("upload at least one image")
        analysis = analyse(detectors, files, lambda done, what: progress(done, desc=what))
        message = (
            f"{len(analysis.names)} file(s), {len(analysis.errors)} unusable: "
            + "; ".join(analysis.errors)
            if analysis.errors
            else f"{len(analysis.names)} file(s) read"
        )
        seen = [
            (zoom(analysis.pixels[k]), analysis.names[i] + (" (resized to 32x32)" if
             analysis.predictions[names[0]][i].resized else ""))
            for k, i in enumerate(analysis.readable)
        ]  # fmt: skip
        cams = cam_overlays(by_name[cam_name], analysis, method)
        choices = [analysis.names[i] for i in analysis.readable]
        pick = gr.Dropdown(choices=choices, value=choices[0] if choices else None)
        table = results_table(analysis, detectors)
        return message, table, seen, cams, analysis.records(detectors), analysis, pick

    def recam(analysis: Analysis | None, cam_name: str, method: str):
        return cam_overlays(by_name[cam_name], analysis, method) if analysis else []

    def explore(analysis: Analysis | None, choice: str | None):
        if analysis is None or choice is None:
            return [], []
        k = [analysis.names[i] for i in analysis.readable].index(choice)
        return what_if(detectors, analysis.pixels[k])

    return detect, recam, explore


def _what_if_tab(detectors: Sequence[Detector]) -> tuple[Any, Any, Any]:
    """The What if tab: (the image picker, the changed images, the answers table)."""
    import gradio as gr

    with gr.Tab("What if", elem_id="tab-whatif"):
        gr.Markdown(
            "The image after the conditions of `cifake evaluate` (JPEG, blur, resize, "
            "noise), and each detector's answer on it."
        )
        pick = gr.Dropdown([], label="Image", elem_id="whatif-pick")
        changed = gr.Gallery(label="Changed images", columns=7, elem_id="whatif-images")
        answers = gr.Dataframe(
            headers=["condition"]
            + [h for d in detectors for h in (f"{d.name} P(FAKE)", f"{d.name} label")]
            + ["definition"],
            interactive=False, elem_id="whatif-table",
        )  # fmt: skip
    return pick, changed, answers


def _model_tab(detectors: Sequence[Detector]) -> None:
    """The Model tab: each detector's threshold, robustness plot and table, and card."""
    import gradio as gr

    with gr.Tab("Model", elem_id="tab-model"):
        for det in detectors:
            gr.Markdown(model_summary(det))
            plot = robustness_plot(det)
            if plot is not None:
                gr.Image(str(plot), label=f"{det.name}: robustness", show_label=True)
            if det.evaluation is not None:
                gr.Dataframe(
                    robustness_rows(det.evaluation),
                    headers=ROBUSTNESS_HEADERS,
                    interactive=False, elem_id=f"robustness-{det.name}",
                )  # fmt: skip
            with gr.Accordion(f"{det.name}: card", open=False):
                gr.Markdown(card_text(det))


def launch(demo: Any, host: str, port: int, workdir: Path) -> str:
    """Start serving the app in the background; its URL."""
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port or _free_port(host),
        prevent_thread_lock=True,
        quiet=True,
        max_file_size=MAX_UPLOAD,
        allowed_paths=[str(workdir)],
        footer_links=["api"],
    )
    return str(url)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
