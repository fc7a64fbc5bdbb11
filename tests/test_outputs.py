"""The output-folder rule: cifake deletes or overwrites only what it can prove it wrote,
replaces outputs atomically, and recovers what a killed run left (cifake_hub/outputs.py)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import datasets
import pytest

from cifake_hub.builders.kaggle import ImportConfig, import_kaggle
from cifake_hub.dataset_folder import DatasetFolder
from cifake_hub.errors import OutputFolderError
from cifake_hub.outputs import MARKER, Replacement, claim, read_marker
from tests import factories


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (or link target) of everything under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = f"-> {os.readlink(p)}"
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cifake_hub.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


# -- the rule itself ---------------------------------------------------------------------------
def test_claim_marks_new_folders_and_refuses_foreign_ones(tmp_path):
    run = claim(tmp_path / "run", "run")
    assert read_marker(run)["kind"] == "run"
    assert claim(run, "run") == run  # resumed
    with pytest.raises(OutputFolderError, match="holds a cifake-hub run output, not a dataset"):
        claim(run, "dataset")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    with pytest.raises(OutputFolderError, match=r"mine is not empty and was not written"):
        claim(mine, "run")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="exists and is not a folder"):
        claim(tmp_path / "file", "run")
    with pytest.raises(OutputFolderError, match="--out is empty"):
        claim("", "run")
    assert (mine / "notes.txt").read_text() == "x" and (tmp_path / "file").read_text() == "x"


def test_replacement_is_atomic_and_refuses_unlisted_files(tmp_path):
    target = tmp_path / "tree"
    with Replacement(target, "tree", overwrite=False) as staged:
        (staged / "a.txt").write_text("1")
    assert read_marker(target)["files"] == ["a.txt"]
    with pytest.raises(OutputFolderError, match="already holds a tree"):
        Replacement(target, "tree", overwrite=False)
    # A failure inside leaves the old output exactly as it was, and no staging folder.
    before = snapshot(target)
    with pytest.raises(RuntimeError), Replacement(target, "tree", overwrite=True) as staged:
        (staged / "a.txt").write_text("2")
        raise RuntimeError("boom")
    assert snapshot(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["tree"]
    # A file cifake did not write stops any replacement, and survives.
    (target / "mywork").mkdir()
    (target / "mywork" / "keep.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match=r"mywork/keep.txt was not written by cifake"):
        Replacement(target, "tree", overwrite=True)
    assert (target / "mywork" / "keep.txt").read_text() == "mine"


def test_interrupted_swap_and_stale_staging_are_recovered(tmp_path):
    target = tmp_path / "tree"
    with Replacement(target, "tree", overwrite=False, keep=(".work",)) as staged:
        (staged / "a.txt").write_text("old")
        (staged / ".work").mkdir()
        (staged / ".work" / "unit").write_text("u")
    # Killed between the two renames of a swap: the old output is put back.
    target.rename(tmp_path / ".tree.cifake-old")
    # Killed while staging, after the checkpoints moved in: they move back.
    stale = tmp_path / ".tree.cifake-staging-999999999"
    stale.mkdir()
    (stale / MARKER).write_text('{"kind": "tree", "carried": [".work"]}')
    (tmp_path / ".tree.cifake-old" / ".work").rename(stale / ".work")
    with Replacement(target, "tree", overwrite=True, keep=(".work",)) as staged:
        assert (target / "a.txt").read_text() == "old"
        assert (target / ".work" / "unit").read_text() == "u"
        (staged / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "new" and (target / ".work" / "unit").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


# -- item 1: demo and the publish folder -----------------------------------------------------
def test_demo_refuses_a_publish_folder_it_did_not_write(tmp_path):
    out = tmp_path / "d"
    (out / "publish" / "mywork").mkdir(parents=True)
    (out / "publish" / "mywork" / "a.txt").write_text("x")
    res = _cli("demo", "--out", str(out))
    assert res.returncode == 1 and "d is not empty and was not written by" in res.stderr
    # The same inside a job folder of an earlier demo: refused before any work is done.
    out = claim(tmp_path / "d2", "job")
    (out / "publish" / "mywork").mkdir(parents=True)
    (out / "publish" / "mywork" / "a.txt").write_text("x")
    res = _cli("demo", "--out", str(out))
    assert res.returncode == 1, res.stderr
    assert "publish is not empty and was not written by cifake-hub" in res.stderr
    assert "Traceback" not in res.stderr and not (out / "cifake-sample").exists()
    assert (out / "publish" / "mywork" / "a.txt").read_text() == "x"


def test_demo_out_on_an_existing_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("mine")
    res = _cli("demo", "--out", str(tmp_path / "f"))
    assert res.returncode == 1 and "exists and is not a folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and (tmp_path / "f").read_text() == "mine"


def test_dry_run_replaces_only_its_own_tree(small_cifake, small_run, tmp_path):
    from cifake_hub.hub.publish import PublishConfig, dry_run

    cfg = PublishConfig(
        dataset=str(small_cifake), dataset_repo="u/d", run=str(small_run), model_repo="u/m"
    )
    tree = tmp_path / "publish"
    first = dry_run(cfg, tree)
    assert dry_run(cfg, tree) == first  # its own tree is replaced
    (tree / "mine.txt").write_text("x")
    with pytest.raises(OutputFolderError, match="mine.txt was not written"):
        dry_run(cfg, tree)
    assert (tree / "mine.txt").read_text() == "x"
    # No marker and no local path reaches the model repo.
    repos = [p for name in ("dataset", "model") for p in (tree / name).rglob("*")]
    text = "".join(p.read_text(errors="ignore") for p in repos if p.is_file())
    assert str(small_cifake) not in text and str(tmp_path) not in text
    assert "u/d" in (tree / "model" / "run_config.json").read_text()
    assert not list((tree / "model").rglob(MARKER))


# -- items 2-4: import-kaggle -----------------------------------------------------------------
def test_overwrite_refuses_a_folder_cifake_did_not_write(kaggle_zip, tmp_path):
    out = tmp_path / "p"
    (out / "data").mkdir(parents=True)
    (out / "data" / "results.csv").write_text("a")
    for extra in ([], ["--overwrite"]):
        res = _cli("import-kaggle", str(kaggle_zip.path), "--out", str(out), *extra)
        assert res.returncode == 1
        assert "not empty and was not written by cifake-hub" in res.stderr
        assert "already holds a dataset" not in res.stderr
    assert (out / "data" / "results.csv").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifake.zip", "p"]


def test_failed_overwrite_leaves_the_old_dataset_exactly(kaggle_zip, tmp_path):
    out = tmp_path / "p"
    import_kaggle(ImportConfig(src=str(kaggle_zip.path), out=str(out)))
    before = snapshot(out)
    res = _cli("import-kaggle", str(kaggle_zip.path), "--out", str(out), "--overwrite", "--strict")
    assert res.returncode == 1 and "--strict" in res.stderr
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifake.zip", "p"]
    # A successful overwrite replaces every file, the card included.
    import_kaggle(ImportConfig(src=str(kaggle_zip.path), out=str(out), dedupe=True), overwrite=True)
    assert snapshot(out) != before
    assert datasets.load_dataset(str(out))["train"].num_rows < sum(
        1 for k in kaggle_zip.valid if k.startswith("train/")
    )


def test_import_into_a_users_folder_keeps_their_readme(kaggle_zip, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("# my notes\n")
    res = _cli("import-kaggle", str(kaggle_zip.path), "--out", str(mine))
    assert res.returncode == 1 and (mine / "README.md").read_text() == "# my notes\n"
    res = _cli("import-kaggle", str(kaggle_zip.path), "--out", "", cwd=tmp_path)
    assert res.returncode == 1 and "--out is empty" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifake.zip", "mine"]


# -- item 5: repeated zip member names ---------------------------------------------------------
def test_zip_members_with_one_name_are_all_imported(tmp_path):
    rng = factories.np.random.default_rng(0)
    blobs = [factories.jpeg_bytes(factories.random_pixels(rng), 90) for _ in range(3)]
    src = tmp_path / "dup.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("train/REAL/0000 (2).jpg", blobs[0])
        z.writestr("train/FAKE/0001 (2).jpg", blobs[2])
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.writestr("train/REAL/0000 (2).jpg", blobs[1])
    result = import_kaggle(ImportConfig(src=str(src), out=str(tmp_path / "out")))
    rows = datasets.load_dataset(str(tmp_path / "out"))["train"].cast_column(
        "image", datasets.Image(decode=False)
    )
    assert sorted(r["image"]["bytes"] for r in rows) == sorted(blobs)
    assert result.report["repeated_zip_names"] == ["train/REAL/0000 (2).jpg"]


# -- killed runs -------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("delay", [0.4, 1.0, 2.0, 3.5])
def test_sigkilled_import_leaves_no_workers_and_recovers(tmp_path, existing, delay):
    """kill -9 at several moments (pool start-up, reading, writing, swapping, done): the
    workers never outlive the import, and the folder holds the old output, or none, or the
    complete new one, never a part; the next run recovers without --overwrite."""
    src = factories.make_kaggle_folder(tmp_path / "src", per_class=12).path
    out = tmp_path / "out"
    if existing:
        import_kaggle(ImportConfig(src=str(src), out=str(out)))
    before = snapshot(out) if existing else {}
    args = ["import-kaggle", str(src), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifake_hub.cli.main", *args, "--overwrite"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, workers = time.monotonic() + delay, set()
    while time.monotonic() < deadline and proc.poll() is None:
        workers.update(_children(proc.pid))  # every worker the import ever had
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "worker processes outlived the import"
    old = tmp_path / ".out.cifake-old"  # killed between the two renames of the swap
    shown = out if out.exists() else old if old.exists() else None
    now = snapshot(shown) if shown is not None else {}
    marker = read_marker(out) if out.exists() else None
    finished = marker is not None and marker.get("complete") is True
    assert now == before or finished, "a killed import left a partial dataset"
    # The next run recovers without --overwrite when nothing finished, and cleans up.
    res = _cli(*args, *(["--overwrite"] * (existing or finished)))
    assert res.returncode == 0, res.stderr
    assert DatasetFolder(out).file(DatasetFolder.REPORT).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


# -- the rule in the other commands ---------------------------------------------------------------
def test_every_command_refuses_a_folder_it_did_not_write(small_cifake, small_run, tmp_path):
    import shutil

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    before = snapshot(mine)
    refusals = {
        "build": _cli("build", "--out", str(mine), "--generator", "tiny"),
        "search": _cli("search", str(small_cifake), "--out", str(mine)),
        "card": _cli("card", "dataset", str(mine)),
    }
    for command, res in refusals.items():
        assert res.returncode == 1 and "written by cifake-hub" in res.stderr, command
        assert "Traceback" not in res.stderr, command
    # A run folder's gradcam/ holding the user's file, and a --gradcam folder of theirs.
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    assert _cli("explain", str(run), "--n", "10").returncode == 0
    (run / "gradcam" / "mine.txt").write_text("x")
    res = _cli("explain", str(run), "--n", "10")
    assert res.returncode == 1 and "mine.txt was not written by cifake-hub" in res.stderr
    image = next(p for p in small_cifake.rglob("*.parquet"))  # any file: predict reports it
    res = _cli("predict", str(image), "--model", str(small_run), "--gradcam", str(mine))
    assert res.returncode == 1 and "not written by cifake-hub" in res.stderr
    # A dataset folder cifake did not write gets no card written into it.
    foreign = tmp_path / "foreign"
    shutil.copytree(small_cifake, foreign)
    (foreign / MARKER).unlink()
    res = _cli("card", "dataset", str(foreign))
    assert res.returncode == 1 and "not a dataset folder written by cifake-hub" in res.stderr
    assert snapshot(mine) == before and (run / "gradcam" / "mine.txt").read_text() == "x"


def test_a_marker_being_written_by_another_rank_is_not_a_foreign_file(tmp_path):
    """torchrun ranks claim one build folder at once: one rank's half-written marker
    (written to a temporary name, then renamed) must not make the other refuse it."""
    from cifake_hub.outputs import check_replaceable

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / f".{MARKER}.4242.tmp").write_text("{")
    assert claim(fresh, "dataset") == fresh
    (fresh / f".{MARKER}.4343.tmp").write_text("{")
    assert check_replaceable(fresh, "dataset", overwrite=False, keep=(".work",)) == fresh
