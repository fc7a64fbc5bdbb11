"""The files of a Hugging Face Space running `cifake app` on published detectors.

A Space is a repo with ``app.py``, ``requirements.txt`` and a README whose YAML says
``sdk: gradio``. Until cifake-hub is on PyPI the Space installs it from its own wheel,
uploaded beside ``app.py``: the Space builder installs requirements before it copies the
repo, so ``requirements.txt`` names the wheel by its URL on the Hub. The wheel is built from
the source tree with a fixed timestamp, so the same sources give the same bytes (a dry run
and a push write the same tree, and a second publish makes no commit).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cifake_hub.errors import CifakeError

APP_FILE = "app.py"
REQUIREMENTS = "requirements.txt"
README = "README.md"
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest date a zip entry can hold
SOURCE_PARTS = ("pyproject.toml", "README.md", "cifake_hub", "builders", "cards", "training")

APP_TEMPLATE = '''\
"""cifake detectors in the browser: the app of `cifake app`, on the models this Space links.

Made by cifake-publish; run locally with `python app.py`.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

WORKDIR = Path(tempfile.mkdtemp(prefix="cifake-app-"))
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)
# Gradio reads these when imported: uploads and caches stay in one temporary folder.
os.environ.setdefault("GRADIO_TEMP_DIR", str(WORKDIR / "uploads"))
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(WORKDIR / "examples-cache"))

from cifake_hub.app import analyse, build_app, load_detectors  # noqa: E402

MODELS = {models!r}
detectors = load_detectors(MODELS)
demo = build_app(detectors, WORKDIR)


def answer(files):
    """Each detector's answer for image files, as the page gives it (one record per file)."""
    return analyse(detectors, files).records(detectors)


if __name__ == "__main__":
    demo.launch()
'''


def source_root() -> Path:
    """The source tree this package runs from (an editable install or a checkout)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or 'name = "cifake-hub"' not in pyproject.read_text():
        raise CifakeError(
            "a Space installs cifake-hub from a wheel built from its source tree, and this "
            f"install has none ({root}); install from a checkout (pip install -e .) to publish "
            "a Space"
        )
    return root


def build_wheel(out: Path) -> Path:
    """Build this package's wheel into ``out`` from a clean copy of the source tree (no
    stale ``build/``), with a fixed timestamp; the wheel's path."""
    root = source_root()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cifake-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for part in SOURCE_PARTS:
            item = root / part
            if item.is_dir():
                shutil.copytree(
                    item, src / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy2(item, src / part)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--no-build-isolation", "--wheel-dir", str(Path(tmp) / "dist"), str(src)],
            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
            capture_output=True,
            text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise CifakeError(f"building the cifake-hub wheel for the Space failed: {last}")
        (wheel,) = (Path(tmp) / "dist").glob("cifake_hub-*.whl")
        return Path(shutil.copy2(wheel, out / wheel.name))


def requirements(wheel_url: str) -> str:
    return (
        "# cifake-hub from the wheel in this Space (the builder installs requirements before\n"
        "# it copies the repo, hence the URL); with the training extra for the detectors.\n"
        f"cifake-hub[app,train] @ {wheel_url}\n"
    )


def space_readme(
    title: str, models: list[str], datasets: list[str], endpoint: str, gradio_version: str
) -> str:
    """The Space's README: the YAML the Hub reads (SDK, app file, linked repos) and a few
    lines on what the app shows."""
    from huggingface_hub import SpaceCardData

    data = SpaceCardData(
        title=title,
        sdk="gradio",
        sdk_version=gradio_version,
        app_file=APP_FILE,
        models=models,
        datasets=datasets or None,
        license="mit",
        short_description="Is this 32x32 image generated? CIFAKE detectors, with CAMs.",
        emoji="🔍",
        colorFrom="blue",
        colorTo="gray",
    )
    links = ", ".join(f"[{m}]({endpoint}/{m})" for m in models)
    return (
        f"---\n{data.to_yaml()}\n---\n\n# {title}\n\n"
        f"The `cifake app` of cifake-hub on {links}: upload images to "
        "get each detector's P(FAKE) and label at its calibrated threshold, its class "
        "activation maps (Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM), its answers after JPEG, "
        "blur, resize and noise, and the robustness its card reports.\n\n"
        "The detectors look at 32x32 images: larger ones are resized (RGB, bilinear) first.\n"
    )


def write_space(
    out: Path,
    models: list[str],
    datasets: list[str],
    endpoint: str,
    space_repo: str,
    revision: str | None,
) -> None:
    """Write the Space's files into ``out``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        gradio_version = version("gradio")
    except PackageNotFoundError as exc:
        raise CifakeError(
            "a Space runs Gradio, which is not installed: pip install 'cifake-hub[app]'"
        ) from exc
    out.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(out)
    url = f"{endpoint}/spaces/{space_repo}/resolve/{revision or 'main'}/{wheel.name}"
    (out / APP_FILE).write_text(APP_TEMPLATE.format(models=models))
    (out / REQUIREMENTS).write_text(requirements(url))
    title = "CIFAKE detector" if len(models) == 1 else "CIFAKE detectors"
    (out / README).write_text(
        space_readme(title, models, datasets, endpoint, gradio_version), encoding="utf-8"
    )
