"""`cifake app`: a real server process, driven by gradio_client and by a headless Chromium
(Playwright pointed at Debian's browser), checked against `cifake predict`; and the Space
that `cifake-publish --space-repo` makes, dry run against a push to the test Hub server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cifake_hub.shipped import SAMPLE
from tests.test_publish import DATA_REPO, MODEL_REPO, hub_env

SPACE_REPO = "tester/cifake-app"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = os.environ.get("CIFAKE_SCREENSHOT")  # where to keep the page's picture (README)


def sample_files(folder: Path) -> list[Path]:
    """A REAL and a FAKE image of the embedded sample, and a file that is no image."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(SAMPLE) as archive:
        real = folder / "real-0000.jpg"
        real.write_bytes(archive.read("train/REAL/0000.jpg"))
        fake = folder / "fake-1000.jpg"
        fake.write_bytes(archive.read("train/FAKE/1000.jpg"))
    junk = folder / "notes.png"
    junk.write_text("not an image\n")
    return [real, fake, junk]


def expected(files: list[Path], model: str, threshold: float) -> dict[str, tuple[str, float]]:
    """file name -> (label, P(FAKE)) from `cifake predict`'s code, at the app's threshold;
    an unreadable file -> ("error", nan)."""
    from cifake_hub.predict import PredictConfig, predict_paths

    outcome = predict_paths(files, PredictConfig(model=model, threshold=threshold))
    return {
        Path(r.path).name: ("error", float("nan"))
        if r.probability_real is None
        else (str(r.label), 1 - r.probability_real)
        for r in outcome.results
    }


def thresholds() -> dict[str, float]:
    from cifake_hub.app import load_detectors

    return {d.name: d.threshold for d in load_detectors(["robust", "strong"])}


@pytest.fixture(scope="module")
def app_server(tmp_path_factory) -> Iterator[tuple[str, Path, Path]]:
    """`cifake app` with the default detectors on a free port: (URL, its TMPDIR, its cwd).
    Stopped with SIGTERM at the end, which must leave both folders empty."""
    root = tmp_path_factory.mktemp("app")
    tmp, cwd = root / "tmp", root / "cwd"
    tmp.mkdir()
    cwd.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifake_hub.cli.main", "app", "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # the URL line is the readiness signal
        lines.append(line)
        if line.startswith("cifake app: http"):
            break
    else:
        raise AssertionError(f"the app did not start: {''.join(lines)}")
    url = line.split()[2]
    try:
        yield url, tmp, cwd
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, out
        assert "Traceback" not in out, out
        assert list(tmp.iterdir()) == [], "the app left files in its temporary folder"
        assert list(cwd.iterdir()) == [], "the app wrote into the working directory"


def test_api_answers_like_predict(app_server, tmp_path):
    from gradio_client import Client, handle_file

    url, _, _ = app_server
    files = sample_files(tmp_path / "in")
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
    message, table, seen, cams, records, _ = client.predict(
        [handle_file(str(f)) for f in files], "robust", "layercam", api_name="/detect"
    )
    assert "3 file(s), 1 unusable: notes.png" in message
    limits = thresholds()
    for name, limit in limits.items():
        want = expected(files, name, limit)
        for record in records:
            got = record["detectors"][name]
            label, p_fake = want[record["file"]]
            if label == "error":
                assert got is None and record["error"]
                continue
            assert got["label"] == label
            assert got["p_fake"] == pytest.approx(p_fake, abs=1e-6)
            assert got["threshold_p_real"] == limit
    assert [row[0] for row in table["data"]] == [f.name for f in files]
    assert len(seen) == len(cams) == 2  # the readable images only


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install chromium")
def test_browser_upload_cams_what_if_and_model_tab(app_server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _, _ = app_server
    files = sample_files(tmp_path / "in")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)
        page.set_input_files("#upload input[type=file]", [str(f) for f in files])
        wait_for_status(page, "3 file(s)")
        rows = page_rows(page, "#results")
        assert "notes.png" in page.inner_text("#status")
        limits = thresholds()
        headers, body = rows[0], {r[0]: r for r in rows[1:]}
        assert sorted(body) == sorted(f.name for f in files)
        for name, limit in limits.items():
            want = expected(files, name, limit)
            col = headers.index(f"{name} P(FAKE)")
            for file, (label, p_fake) in want.items():
                if label == "error":
                    assert body[file][col] == "" and "not an image" in body[file][col + 1]
                else:
                    assert body[file][col + 1] == label
                    assert float(body[file][col]) == pytest.approx(p_fake, abs=6e-5)
        cams = page.locator("#cams img")
        before = cams.first.get_attribute("src")
        page.get_by_label("hirescam").check()
        page.wait_for_function(
            "src => document.querySelector('#cams img')?.getAttribute('src') !== src",
            arg=before,
            timeout=60_000,
        )
        assert cams.count() == 2
        if SCREENSHOT:
            page.screenshot(path=SCREENSHOT, full_page=True)
        page.get_by_role("tab", name="What if").click()
        page.wait_for_function(
            "() => document.querySelectorAll('#whatif-images img').length >= 13",
            timeout=60_000,
        )
        what_if = page_rows(page, "#whatif-table")
        assert [r[0] for r in what_if[1:4]] == ["clean", "jpeg:95", "jpeg:90"]
        clean_p = float(what_if[1][what_if[0].index("robust P(FAKE)")])
        assert clean_p == pytest.approx(expected(files[:1], "robust", 0.5)["real-0000.jpg"][1],
                                        abs=6e-5)  # fmt: skip
        page.get_by_role("tab", name="Model").click()
        page.wait_for_selector("#robustness-robust", timeout=30_000)
        robustness = page_rows(page, "#robustness-robust")
        assert "jpeg:50" in [r[0] for r in robustness]
        shot = tmp_path / "model.png"
        page.screenshot(path=str(shot), full_page=True)
        page.get_by_role("tab", name="Detect").click()
        page.locator("#examples").get_by_text("fake-").first.click()  # replaces the upload, runs
        wait_for_status(page, "1 file(s) read")
        browser.close()
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 500 and pixels.std() > 20, "the screenshot is blank"


def wait_for_status(page, text: str) -> None:
    page.wait_for_function(
        "text => (document.querySelector('#status')?.innerText || '').includes(text)",
        arg=text,
        timeout=120_000,
    )


def page_rows(page, selector: str) -> list[list[str]]:
    """The header and rows of a Gradio Dataframe, as the page shows them."""
    return page.eval_on_selector(
        selector,
        """el => [...el.querySelectorAll('[role=row]')].map(row => [
            ...row.querySelectorAll('[role=columnheader], [role=gridcell]')
        ].map(cell => cell.innerText.trim()))""",
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "no-such-model-folder/x"], "cannot get model"),
        (["--port", "70000"], "--port must be in 0..65535"),
        (["--model", "robust", "--model", "robust"], "--model given twice"),
    ],
)
def test_bad_options_are_one_line(args, message):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "cifake_hub.cli.main", "app", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_port_in_use_is_one_line():
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "cifake_hub.cli.main", "app", "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_space_dry_run_equals_push_and_app_answers(tmp_path, hub, small_cifake, small_run):
    from huggingface_hub import SpaceCard

    common = [
        "--dataset", str(small_cifake), "--dataset-repo", DATA_REPO,
        "--run", str(small_run), "--model-repo", MODEL_REPO,
        "--space-repo", SPACE_REPO, "--endpoint", hub.endpoint,
    ]  # fmt: skip
    env = hub_env(tmp_path, hub)
    dry = tmp_path / "dry"
    for extra in (["--dry-run", str(dry)], []):
        proc = subprocess.run(
            [sys.executable, "-m", "cifake_hub.cli.publish", *common, *extra],
            env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert "app.py answered 1 image" in proc.stdout
    pushed = {
        p: c for p, c in hub.state.files("space", SPACE_REPO, "main").items()
        if p != ".gitattributes"
    }  # fmt: skip
    staged = {
        p.relative_to(dry / "space").as_posix(): p.read_bytes()
        for p in (dry / "space").rglob("*")
        if p.is_file()
    }
    assert pushed == staged
    (wheel,) = [p for p in staged if p.endswith(".whl")]
    assert {"app.py", "requirements.txt", "README.md"} <= set(staged)
    requirements = staged["requirements.txt"].decode()
    assert f"{hub.endpoint}/spaces/{SPACE_REPO}/resolve/main/{wheel}" in requirements
    card = SpaceCard.load(dry / "space" / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.models == [MODEL_REPO] and card.data.datasets == [DATA_REPO]
    with zipfile.ZipFile(dry / "space" / wheel) as archive:
        assert "cifake_hub/app.py" in archive.namelist()
