"""The README's commands, run as written so the README stays true.

Fenced ``sh`` blocks are run, in order, in a scratch folder holding the small inputs they
name (a Kaggle-layout zip as cifake-train.zip, a CIFAR-10 tarball, photos), with the Hub
played by the tests' Hub-protocol server. Fenced ``bash`` blocks need a GPU, the real Hub
or hours, and must say so on their first line. The install and test commands are the ones
CI runs; the slow test runs the install in a fresh virtual environment, then the main job.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifake_hub.shipped import SAMPLE
from tests import factories
from tests.conftest import hub_client_env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
INSTALL = 'pip install torch==2.13.0 -e ".[dev]"'
MAIN_JOB = "cifake demo --out cifake-demo"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.S | re.M)


def commands(block: str) -> list[str]:
    joined = block.replace("\\\n", " ")
    return [c.strip() for c in joined.splitlines() if c.strip() and not c.startswith("#")]


def test_set_up_commands_are_the_ones_ci_runs():
    first = commands(blocks("sh")[0])
    assert first == [INSTALL, MAIN_JOB]
    assert commands(blocks("sh")[1]) == ["pytest"]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert INSTALL in ci and "pytest" in ci


def test_commands_not_run_say_why():
    for block in blocks("bash"):
        assert block.startswith("# not run by the tests: "), block


def _scratch(root: Path) -> None:
    factories.make_kaggle_zip(root / "cifake-train.zip", per_class=3)
    factories.make_cifar_tar(root / "cifar-10-python.tar.gz")
    factories.make_cifake_folder(root / "my-new-cifake", per_class_train=3, per_class_test=1)
    rng = np.random.default_rng(0)
    (root / "photos" / "nested").mkdir(parents=True)
    Image.fromarray(factories.random_pixels(rng, 32)).save(root / "photos" / "a.png")
    Image.fromarray(factories.random_pixels(rng, 200)).save(root / "photos" / "nested" / "b.jpg")
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8 not an image")
    Image.fromarray(factories.random_pixels(rng, 64)).save(root / "more.jpg")
    # A user's own fakes for "Bring your own images": class folders, a split, any size.
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("cat", "truck"):
            folder = root / "my-fakes" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(factories.random_pixels(rng, 48)).save(folder / f"{i}.png")
    (root / "examples").symlink_to(ROOT / "examples")


def test_readme_commands_run_as_written(tmp_path, hub):
    from cifake_hub.training.backend import import_keras

    _scratch(tmp_path)
    env = hub_client_env(hub, tmp_path / "hf-home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    ran = []
    for block in blocks("sh"):
        for command in commands(block):
            if command in (INSTALL, "pytest"):
                continue  # the environment this runs in; CI runs both (test above)
            done = subprocess.run(
                command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
            ran.append((command, done.stdout + done.stderr))
    assert len(ran) >= 14

    # The main job: cards, Figure 6, a loadable model and the publish trees, offline.
    demo = tmp_path / "cifake-demo"
    main_output = dict(ran)[MAIN_JOB]
    printed = {
        "dataset card": demo / "cifake-sample" / "README.md",
        "model card": demo / "run" / "README.md",
        "Figure 6": demo / "run" / "gradcam" / "figure6.png",
        "model": demo / "run" / "model.keras",
        "published": demo / "publish",
    }
    for what, path in printed.items():
        assert path.exists(), path
        assert f"{what}:".ljust(14) + str(path.relative_to(tmp_path)) in main_output
    for kind in ("dataset", "model"):
        assert (demo / "publish" / kind / "README.md").exists()
    model = import_keras().saving.load_model(demo / "run" / "model.keras")
    assert model.predict(np.zeros((1, 32, 32, 3), np.uint8), verbose=0).shape == (1, 1)
    # The publishing commands reached the (test) Hub; predict reported the broken file.
    assert ("dataset", "NS/cifake") in hub.state.repos and (
        "model",
        "NS/cifake-cnn",
    ) in hub.state.repos
    assert "broken.jpg" in (tmp_path / "predictions.csv").read_text()

    # `cifake predict` on the sample's real CIFAKE test images (files, not the dataset) gives
    # the accuracy the run measured on the same images, and skips a corrupt file.
    with zipfile.ZipFile(SAMPLE) as z:
        members = [n for n in z.namelist() if n.startswith("test/") and n.endswith(".jpg")]
        z.extractall(tmp_path / "real", members)
    (tmp_path / "real" / "test" / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "real.json"
    done = subprocess.run(
        ["cifake", "predict", "real", "--model", "cifake-demo/run", "--output", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "corrupt.jpg" in done.stdout + done.stderr
    rows = json.loads(out.read_text())["predictions"]
    scored = [r for r in rows if r["label"] is not None]
    assert len(scored) == len(members) and len(rows) == len(members) + 1
    accuracy = np.mean([r["label"] == r["path"].split("/")[-2] for r in scored])
    test = json.loads((demo / "run" / "test_results.json").read_text())
    assert accuracy == pytest.approx(test["final"]["metrics"]["accuracy"], abs=1e-9)


@pytest.mark.slow
def test_install_then_main_job_in_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HF_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv))
    install = subprocess.run(INSTALL, shell=True, cwd=ROOT, env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    # The main job offline: no Hub, no network.
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    job = subprocess.run(
        MAIN_JOB, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert job.returncode == 0, job.stderr[-3000:]
    for name in ("run/README.md", "cifake-sample/README.md", "run/gradcam/figure6.png"):
        assert (tmp_path / "cifake-demo" / name).exists(), name
    check = "import keras; keras.saving.load_model('cifake-demo/run/model.keras')"
    assert (
        subprocess.run([venv / "bin" / "python", "-c", check], cwd=tmp_path, env=env).returncode
        == 0
    )
