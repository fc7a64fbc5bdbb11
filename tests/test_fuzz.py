"""Every command against a generated set of hostile paths: FIFOs, dangling links and link
loops, names that are not UTF-8, read-only folders, files of the wrong kind, and folders of
ours with corrupt JSON in each of their files. Whatever the command and wherever the path
goes (input or output), it ends in a known way: no traceback, exit code 0, 1, 2 or 130, no
hang, and no file outside its own output changed."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cifake_hub.cli.main import main
from tests import factories
from tests.test_outputs import snapshot

CASE_SECONDS = 120  # a case still running after this hangs
EXIT_CODES = {0, 1, 2, 130}


def _png(seed: int) -> bytes:
    return factories.png_bytes(factories.random_pixels(np.random.default_rng(seed)))


def hostile_paths(root: Path, read_only_folder: Path | None) -> dict[str, Path]:
    """Paths no command should trip over, by kind."""
    root.mkdir(parents=True)
    paths: dict[str, Path] = {}
    os.mkfifo(root / "pipe.jpg")
    paths["fifo"] = root / "pipe.jpg"
    (root / "dangling").symlink_to(root / "nowhere")
    paths["dangling link"] = root / "dangling"
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    paths["link loop"] = root / "loop-a"
    odd = root / "odd-names"
    odd.mkdir()
    (odd / os.fsdecode(b"\xff\xfe-image.png")).write_bytes(_png(1))
    (odd / "fine.png").write_bytes(_png(2))
    paths["non-UTF-8 names"] = odd
    mixed = root / "with-a-fifo"
    mixed.mkdir()
    os.mkfifo(mixed / "a.jpg")
    (mixed / "b.png").write_bytes(_png(3))
    (mixed / "gone.png").symlink_to(root / "nowhere.png")
    paths["folder with a FIFO and a dangling link"] = mixed
    (root / "notes.txt").write_text("not an image, a dataset, a model or a folder\n")
    paths["text file"] = root / "notes.txt"
    fake_parquet = root / "not-parquet"
    (fake_parquet / "data").mkdir(parents=True)
    (fake_parquet / "data" / "train-00000-of-00001.parquet").write_text("no\n")
    paths["folder of non-Parquet"] = fake_parquet
    if read_only_folder is not None:
        paths["read-only empty folder"] = read_only_folder
    return paths


def corrupt_copies(root: Path, folders: dict[str, Path]) -> dict[str, Path]:
    """A copy of each folder per JSON file in it, with that file cut in half."""
    root.mkdir(parents=True)
    out = {}
    for name, folder in folders.items():
        for i, file in enumerate(sorted(folder.rglob("*.json*"))):
            rel = file.relative_to(folder)
            copy = root / f"{name}-{i}"
            shutil.copytree(folder, copy, symlinks=True)
            text = (copy / rel).read_text()
            (copy / rel).write_text(text[: len(text) // 2])
            out[f"{name} with a corrupt {rel.as_posix()}"] = copy
    return out


@contextlib.contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    def hung(*_: object) -> None:
        raise TimeoutError(f"{what} still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def commands(p: Path, out: Path, ok: dict[str, Path]) -> list[list[str]]:
    """Every command with the hostile path ``p`` in each place a path goes."""
    ds, run, image, tar = (str(ok[k]) for k in ("dataset", "run", "image", "tar"))
    one_epoch = ["--epochs", "1", "--max-train", "40"]
    small_build = ["--per-class-train", "1", "--per-class-test", "0", "--steps", "1",
                   "--batch-size", "2"]  # fmt: skip
    eval_quick = ["--conditions", "clean", "--bootstrap", "0", "--max-rows", "40"]
    explain_quick = ["--n", "8", "--no-sanity", "--no-road"]
    return [
        ["import-kaggle", str(p), "--out", str(out)],
        ["import-kaggle", str(ok["zip"]), "--out", str(p)],
        ["build", "--out", str(out), "--real", f"dir:{p}", "--generator", "tiny", *small_build],
        ["build", "--out", str(out), "--real", f"cifar-tar:{tar}", "--fake", f"dir:{p}@mine",
         "--generator", "tiny", *small_build],
        ["build", "--out", str(out), "--real", f"cifar-tar:{tar}", "--fake",
         f"parquet:{p}@mine", "--generator", "tiny", *small_build],
        ["build", "--out", str(p), "--real", f"cifar-tar:{tar}", "--generator", "tiny",
         *small_build],
        ["search", str(p), "--out", str(out), "--topology", "conv=8x1,dense=8x1", *one_epoch],
        ["search", ds, "--out", str(p), "--topology", "conv=8x1,dense=8x1", *one_epoch],
        ["train", str(p), "--out", str(out), *one_epoch],
        ["train", ds, "--out", str(p), *one_epoch],
        ["zoo", "train", "vae", str(p), "--preset", "tiny", "--out", str(out)],
        ["zoo", "train", "vae", ds, "--preset", "tiny", "--out", str(p)],
        ["study", str(p), "--out", str(out), *one_epoch],
        ["evaluate", str(p), "--dataset", ds, "--out", str(out), *eval_quick],
        ["evaluate", run, "--dataset", str(p), "--out", str(out), *eval_quick],
        ["evaluate", run, "--dataset", ds, "--out", str(p), *eval_quick],
        ["evaluate", run, "--dataset", ds, "--out", str(out), "--conditions", str(p)],
        ["explain", str(p), "--dataset", ds, *explain_quick],
        ["explain", run, "--dataset", str(p), *explain_quick],
        ["card", "dataset", str(p)],
        ["card", "model", str(p)],
        ["predict", str(p), "--model", run],
        ["predict", image, "--model", str(p)],
        ["predict", image, "--model", run, "--output", str(p)],
        ["predict", image, "--model", run, "--gradcam", str(p)],
        ["publish", "--dataset", str(p), "--dataset-repo", "tester/d", "--dry-run", str(out)],
        ["publish", "--dataset", ds, "--dataset-repo", "tester/d", "--run", str(p),
         "--model-repo", "tester/m", "--dry-run", str(out)],
        ["publish", "--dataset", ds, "--dataset-repo", "tester/d", "--dry-run", str(p)],
        ["publish", "--generator", str(p), "--generator-repo", "tester/g", "--dry-run",
         str(out)],
        ["demo", "--src", str(p), "--out", str(out), "--detector", "paper"],
        ["demo", "--src", ds, "--out", str(p), "--detector", "paper"],
    ]  # fmt: skip


def run_app(model: Path) -> tuple[int | None, str]:
    """`cifake app --model MODEL` in its own process (a server that starts keeps running): a
    bad model ends it with one line; a server that starts is stopped with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifake_hub.cli.main", "app", "--model", str(model), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=CASE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # serving: stop it as a user would
        out, err = proc.communicate(timeout=60)
    problem = "a traceback was printed" if "Traceback" in err else ""
    if not problem and proc.returncode not in EXIT_CODES:
        problem = f"exit code {proc.returncode}"
    return proc.returncode, problem


def run_case(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | None, str]:
    """(exit code, a problem or ""), the command run in this process."""
    capsys.readouterr()
    code: int | None = None
    problem = ""
    try:
        with deadline(CASE_SECONDS, "the command"):
            code = main(argv)
    except SystemExit as exc:  # argparse: usage and exit code 2
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - what the user would have seen
        problem = "traceback: " + traceback.format_exc(limit=3).strip().splitlines()[-1]
    err = capsys.readouterr().err
    if "Traceback (most recent call last)" in err:
        problem = problem or "a traceback was printed"
    if not problem and code not in EXIT_CODES:
        problem = f"exit code {code}"
    return code, problem


def test_every_command_against_hostile_paths(
    tmp_path, capsys, read_only, small_cifake, small_run, kaggle_zip, cifar_tar, monkeypatch
):
    monkeypatch.setenv("CIFAKE_DEBUG", "")  # known errors as the user sees them
    # Our own folders, corrupt in each JSON file: a Kaggle import, a run, a build.
    imported = tmp_path / "imported"
    assert main(["import-kaggle", str(kaggle_zip.path), "--out", str(imported)]) == 0
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    try:
        ro: Path | None = read_only("inputs/read-only")
    except pytest.skip.Exception:
        ro = None  # no way to make one on this machine: the other kinds still run
    paths = hostile_paths(inputs / "hostile", ro)
    paths |= corrupt_copies(inputs / "corrupt", {"imported dataset": imported, "run": small_run})
    image = tmp_path / "ok.png"
    image.write_bytes(_png(9))
    # Private copies of the shared dataset and run: a command that succeeds writes into them.
    ok = {"dataset": tmp_path / "dataset", "run": tmp_path / "run", "image": image,
          "tar": cifar_tar.path, "zip": kaggle_zip.path}  # fmt: skip
    shutil.copytree(small_cifake, ok["dataset"], symlinks=True)
    shutil.copytree(small_run, ok["run"], symlinks=True)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    failures = []
    counter = itertools.count()
    for kind, path in paths.items():
        for argv in commands(path, outputs / f"out-{next(counter)}", ok):
            before = snapshot(inputs)
            code, problem = run_case(argv, capsys)
            changed = _changed(before, snapshot(inputs), argv)
            if problem or changed:
                failures.append(f"{kind}: cifake {' '.join(argv)}: {problem or changed}")
        if "with a corrupt" not in kind:  # the app reads models, not folder records
            before = snapshot(inputs)
            code, problem = run_app(path)
            changed = _changed(before, snapshot(inputs), ["app"])
            if problem or changed:
                failures.append(f"{kind}: cifake app --model {path}: {problem or changed}")
    assert not failures, f"{len(failures)} case(s):\n" + "\n".join(failures)


def _changed(before: dict[str, object], after: dict[str, object], argv: list[str]) -> str:
    """Files of the inputs that changed, less what the command writes into a folder of ours
    by design (a card's README.md, explain's gradcam/)."""
    # A card is listed in its folder's marker, so the marker changes with it.
    card = ("README.md", ".cifake-output.json")
    own = {"card": card, "demo": card, "explain": ("gradcam/",)}.get(argv[0], ())
    differ = sorted(
        k for k in set(before) | set(after)
        if before.get(k) != after.get(k) and not any(part in k for part in own)
    )  # fmt: skip
    return f"changed {differ[:5]}" if differ else ""
