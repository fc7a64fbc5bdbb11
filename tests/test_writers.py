"""One writer per output folder, and nothing in an output folder that the marker does not list
is ever removed: a second process gets one line naming the folder and the writer's PID; a
killed writer leaves no lock behind; links, empty folders and FIFOs of the user's stop a
replacement."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cifake_hub.errors import OutputFolderError
from cifake_hub.outputs import Replacement, lock_path, output_lock
from tests import factories
from tests.test_outputs import snapshot

HOLD = """
import sys, time
from cifake_hub.outputs import output_lock
with output_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(600)
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cifake_hub.cli.main", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def hold(folder: Path) -> subprocess.Popen[str]:
    """Another process holding ``folder``'s writer lock, once it says so."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def commands(tmp_path: Path, small_cifake: Path, small_run: Path, out: Path) -> dict[str, list]:
    zip_path = factories.make_kaggle_zip(tmp_path / "k.zip").path
    return {
        "import-kaggle": ["import-kaggle", str(zip_path), "--out", str(out), "--overwrite"],
        "search": ["search", str(small_cifake), "--out", str(out), "--topology",
                   "conv=16x1,dense=16x1", "--epochs", "1"],
        "train": ["train", str(small_cifake), "--out", str(out), "--recipe", "strong",
                  "--epochs", "1"],
        "evaluate": ["evaluate", str(small_run), "--out", str(out)],
        "explain": ["explain", str(out)],
        "zoo": ["zoo", "train", "vae", str(small_cifake), "--out", str(out), "--preset", "tiny"],
        "card": ["card", "dataset", str(out)],
        "predict": ["predict", str(zip_path.parent), "--gradcam", str(out)],
    }  # fmt: skip


@pytest.mark.parametrize(
    "command", ["import-kaggle", "search", "train", "evaluate", "explain", "zoo", "card", "predict"]
)
def test_a_second_writer_is_one_line_and_changes_nothing(
    tmp_path, small_cifake, small_run, command
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "note.txt").write_text("the other writer's file")
    before = snapshot(out)
    holder = hold(out)
    try:
        proc = cli(*commands(tmp_path, small_cifake, small_run, out)[command])
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert f"is being written by another cifake process (PID {holder.pid})" in line
    assert str(out) in line
    assert snapshot(out) == before


def test_a_killed_writer_leaves_no_lock(tmp_path):
    out = tmp_path / "ds"
    holder = hold(out)
    with pytest.raises(OutputFolderError, match=f"PID {holder.pid}"), output_lock(out):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    zip_path = factories.make_kaggle_zip(tmp_path / "k.zip").path
    proc = cli("import-kaggle", str(zip_path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not lock_path(out).exists()  # released and removed after a clean finish


def test_two_imports_at_once_one_wins_the_other_is_refused(tmp_path):
    """The reported race: both commands started together; exactly one writes the folder."""
    big = factories.make_kaggle_zip(tmp_path / "big.zip", per_class=30).path
    small = factories.make_kaggle_zip(tmp_path / "small.zip").path
    out = tmp_path / "X"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cifake_hub.cli.main",
                "import-kaggle",
                str(z),
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for z in (big, small)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 1], [0, 0]), results
    if codes == [0, 1]:
        (err,) = [e for code, e in results if code == 1]
        assert "being written by another cifake process" in err or "already holds" in err
    else:  # the second started after the first finished: it found a finished dataset
        pytest.fail("without --overwrite the later of two imports must be refused")


def test_reentrant_in_one_process(tmp_path):
    with output_lock(tmp_path / "a"), output_lock(tmp_path / "a"):
        assert lock_path(tmp_path / "a").read_text().strip() == str(os.getpid())
    assert not lock_path(tmp_path / "a").exists()


def _finished(target: Path) -> None:
    with Replacement(target, "tree", overwrite=False) as staged:
        (staged / "a.txt").write_text("1")
        (staged / "sub").mkdir()
        (staged / "sub" / "b.txt").write_text("2")
        (staged / "empty").mkdir()  # a folder the toolkit made and left empty


@pytest.mark.parametrize("intruder", ["link-to-folder", "link-to-file", "empty-folder", "fifo"])
def test_anything_unlisted_stops_a_replacement(tmp_path, intruder):
    target = tmp_path / "tree"
    _finished(target)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    entry = target / "sub" / "x"
    if intruder == "link-to-folder":
        entry.symlink_to(mine, target_is_directory=True)
    elif intruder == "link-to-file":
        entry.symlink_to(mine / "precious.txt")
    elif intruder == "empty-folder":
        entry.mkdir()
    else:
        os.mkfifo(entry)
    with pytest.raises(OutputFolderError, match=r"sub/x .*was not written by cifake-hub"):
        Replacement(target, "tree", overwrite=True)
    assert os.path.lexists(entry)
    assert (mine / "precious.txt").read_text() == "keep me"
    # The toolkit's own empty folder does not stop it: with the intruder gone it replaces.
    entry.unlink() if not entry.is_dir() or entry.is_symlink() else entry.rmdir()
    with Replacement(target, "tree", overwrite=True) as staged:
        (staged / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "new"


def test_import_overwrite_keeps_a_users_link(tmp_path):
    """The reported data loss: a link inside a dataset folder, then --overwrite."""
    zip_path = factories.make_kaggle_zip(tmp_path / "k.zip").path
    out = tmp_path / "ds" / "big"
    assert cli("import-kaggle", str(zip_path), "--out", str(out)).returncode == 0
    stuff = tmp_path / "stuff"
    stuff.mkdir()
    (stuff / "thesis.tex").write_text("years of work")
    (out / "link").symlink_to(stuff, target_is_directory=True)
    (out / "empty-of-mine").mkdir()
    proc = cli("import-kaggle", str(zip_path), "--out", str(out), "--overwrite")
    assert proc.returncode == 1
    assert "was not written by cifake-hub" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert (out / "link").is_symlink() and (stuff / "thesis.tex").read_text() == "years of work"
    assert (out / "empty-of-mine").is_dir()


def test_a_torn_results_line_is_dropped_on_resume(small_cifake, tmp_path):
    """kill -9 while the only topology's record was being written: the resume trains it
    again and records it on a clean line, instead of appending onto the fragment."""
    from cifake_hub.training.run_folder import RunFolder
    from cifake_hub.training.search import SearchConfig, run_search

    run_dir = tmp_path / "run"
    config = SearchConfig(topology="conv=16x1,dense=16x1", epochs=1, batch_size=32, patience=0)
    run_search(small_cifake, run_dir, config)
    results = RunFolder(run_dir).results_path
    line = results.read_bytes()
    results.write_bytes(line[: len(line) // 2])  # the torn tail, no newline
    assert RunFolder(run_dir).results() == []
    run_search(small_cifake, run_dir, config)
    lines = results.read_bytes().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith(b"\n")
    assert RunFolder(run_dir).best().topology == "conv=16x1,dense=16x1"


# -- entries that are not regular files: read never, account for always -----------------------
def _odd_entries(folder: Path) -> None:
    os.mkfifo(folder / "pipe.jpg")
    (folder / "dangling.jpg").symlink_to(folder / "missing.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")


def test_predict_lists_fifos_and_links_without_blocking(small_run, tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(folder / "ok.png")
    _odd_entries(folder)
    proc = subprocess.run(
        [sys.executable, "-m", "cifake_hub.cli.main", "predict", str(folder), "--model",
         str(small_run), "--output", str(tmp_path / "p.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import json

    rows = {Path(r["path"]).name: r for r in json.loads((tmp_path / "p.json").read_text())[
        "predictions"]}  # fmt: skip
    assert set(rows) == {"ok.png", "pipe.jpg", "dangling.jpg", "loop.jpg"}
    assert rows["ok.png"]["label"] in ("REAL", "FAKE")
    assert "a FIFO, not a regular file" in rows["pipe.jpg"]["error"]
    assert rows["dangling.jpg"]["error"] and rows["loop.jpg"]["error"]


def test_import_counts_a_fifo_named_like_an_image(tmp_path):
    from tests.test_hostile import hostile_folder

    src = hostile_folder(tmp_path / "src")
    os.mkfifo(src / "train" / "FAKE" / "0002 (3).jpg")
    out = tmp_path / "ds"
    proc = subprocess.run(
        [sys.executable, "-m", "cifake_hub.cli.main", "import-kaggle", str(src), "--out",
         str(out)], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads((out / "import_report.json").read_text())
    invalid = {Path(i["file"]).name: i["problem"] for i in report["invalid"]}
    assert invalid["0002 (3).jpg"] == "cannot be read (a FIFO, not a regular file)"


def test_brought_folder_accounts_for_every_entry(tmp_path):
    from PIL import Image

    from cifake_hub.builders.imported import ImportedSpec, read_source

    folder = tmp_path / "mine" / "train" / "cat"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 10, 30)).save(folder / "ok.png")
    _odd_entries(folder)
    (folder / "to-folder").symlink_to(tmp_path, target_is_directory=True)
    taken, report = read_source(ImportedSpec.parse(f"dir:{tmp_path / 'mine'}@mine", "fake"),
                                "FAKE", 0.0)  # fmt: skip
    assert report.found == 5 and len(taken) == 1
    skipped = {Path(s["key"]).name: s["problem"] for s in report.skipped}
    assert set(skipped) == {"pipe.jpg", "dangling.jpg", "loop.jpg", "to-folder"}
    assert "FIFO" in skipped["pipe.jpg"] and "folder" in skipped["to-folder"]


# -- folders that may not be written: refused before the work, in one line ---------------------
def test_a_read_only_home_is_not_blamed_on_the_dataset(read_only, small_cifake, tmp_path):
    home = read_only("home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-m", "cifake_hub.cli.main", "train", str(small_cifake), "--out",
         str(tmp_path / "run")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: datasets cannot write its cache") and "HF_HOME" in last
    assert str(small_cifake) not in last  # the dataset is not the one blamed


def test_read_only_outputs_are_refused_before_the_work(read_only, small_cifake, small_run):
    from tests.test_outputs import snapshot

    ro = read_only("ro")
    dataset = read_only("dataset", small_cifake)
    before = snapshot(dataset)
    image = small_run / "plots" / next(p.name for p in (small_run / "plots").glob("*.png"))
    cases = {
        "predict": (["predict", str(image), "--model", str(small_run), "--output",
                     str(ro / "x.csv")], "no permission to write there"),
        "search": (["search", str(small_cifake), "--out", str(ro)], "is not writable"),
        "card": (["card", "dataset", str(dataset)], "is not writable"),
    }  # fmt: skip
    for command, (args, message) in cases.items():
        proc = cli(*args)
        assert proc.returncode == 1, (command, proc.stderr)
        assert "Traceback" not in proc.stderr, command
        (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
        assert message in line, (command, line)
    assert snapshot(dataset) == before
    assert list(ro.iterdir()) == []


# -- a folder file damaged after cifake wrote it: one line, whichever command reads it ---------
DAMAGE = {"cut": b'{"topology": "conv=16x', "binary": b"\x00\xff\xfe\x9c not json", "empty": b""}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("name", ["run_config.json", "test_results.json"])
def test_damaged_run_files_are_one_line_in_every_reader(
    small_run, small_cifake, tmp_path, capsys, name, damage
):
    import shutil

    from cifake_hub.cli.main import main
    from tests.test_outputs import snapshot

    run = tmp_path / "run"
    shutil.copytree(small_run, run, symlinks=True)
    (run / name).write_bytes(DAMAGE[damage])
    readers = {
        "card": ["card", "model", str(run)],
        "evaluate": ["evaluate", str(run), "--dataset", str(small_cifake), "--out",
                     str(tmp_path / "eval"), "--conditions", "clean", "--bootstrap", "10"],
        "explain": ["explain", str(run), "--n", "4"],
        "publish": ["publish", "--dataset", str(small_cifake), "--dataset-repo", "ns/d",
                    "--run", str(run), "--model-repo", "ns/m", "--dry-run",
                    str(tmp_path / "tree")],
    }  # fmt: skip
    before = snapshot(run)
    for command, args in readers.items():
        code = main(args)
        err = capsys.readouterr().err
        assert code in (0, 1), (command, err)
        if code == 1:
            assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
            assert name in err or "not" in err, (command, err)
    after = snapshot(run)  # outputs (gradcam/, the card) may be new; nothing else changed
    assert {k: after.get(k) for k in before if k != "README.md"} == {
        k: v for k, v in before.items() if k != "README.md"
    }


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_non_utf8_file_names_are_rows_not_tracebacks(small_run, tmp_path, suffix):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9-\xff.png")  # Latin-1 bytes: not a UTF-8 name
    Image.new("RGB", (32, 32), (1, 2, 3)).save(folder / name, format="PNG")
    out = tmp_path / f"p{suffix}"
    proc = cli("predict", str(folder), "--model", str(small_run), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    if suffix == ".json":
        import json

        text = " ".join(r["path"] for r in json.loads(text)["predictions"])
    assert "caf\\xe9-\\xff.png" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", out.name]  # no .tmp left


def test_non_utf8_names_in_a_brought_folder_are_kept(tmp_path):
    from PIL import Image

    from cifake_hub.builders.imported import ImportedSpec, read_source

    folder = tmp_path / "mine" / "train" / "cat"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32), (9, 9, 9)).save(folder / os.fsdecode(b"\xe9t\xe9.png"), "PNG")
    taken, report = read_source(ImportedSpec.parse(f"dir:{tmp_path / 'mine'}@mine", "fake"),
                                "FAKE", 0.0)  # fmt: skip
    assert [t.key for t in taken] == ["train/cat/\\xe9t\\xe9.png"]
    assert taken[0].key.encode("utf-8")  # a key every writer takes


# -- a shipped detector knows the rows it trained on --------------------------------------------
@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory):
    """The embedded sample as a dataset folder: Kaggle CIFAKE train images."""
    from cifake_hub.builders.kaggle import ImportConfig, import_kaggle
    from cifake_hub.shipped import SAMPLE

    out = tmp_path_factory.mktemp("sample") / "ds"
    import_kaggle(ImportConfig(src=str(SAMPLE), out=str(out)))
    return out


def test_evaluate_reports_the_shipped_detectors_training_rows(sample_folder, tmp_path, capsys):
    import json

    from cifake_hub.cli.main import main

    args = ["--out", str(tmp_path / "e"), "--conditions", "clean", "--bootstrap", "10"]
    code = main(["evaluate", "robust", "--dataset", str(sample_folder), "--split", "test", *args])
    out = "".join(capsys.readouterr())
    assert code == 0
    report = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    leaked = report["leakage"]["rows_also_in_train"]
    assert 400 < leaked < 500  # the sample's test split is Kaggle train, less the slice held out
    assert "in this detector's training data" in " ".join(out.split())


def test_predict_says_when_images_are_training_rows(tmp_path, capsys):
    import json
    import zipfile

    from cifake_hub.cli.main import main
    from cifake_hub.shipped import SAMPLE

    folder = tmp_path / "imgs"
    folder.mkdir()
    with zipfile.ZipFile(SAMPLE) as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("train/FAKE/"))[:20]
        for n in names:
            (folder / Path(n).name).write_bytes(archive.read(n))
    from PIL import Image

    Image.new("RGB", (32, 32), (7, 77, 177)).save(folder / "new.png")  # never trained on
    # robust: the detector that trained on 90% of the Kaggle train split the sample is from.
    args = ["predict", str(folder), "--output", str(tmp_path / "p.json"), "--model", "robust"]
    assert main(args) == 0
    rows = {Path(r["path"]).name: r for r in json.loads((tmp_path / "p.json").read_text())[
        "predictions"]}  # fmt: skip
    assert rows["new.png"]["in_training"] is False
    seen = sum(bool(r["in_training"]) for r in rows.values())
    assert 15 <= seen <= 20
    assert f"{seen} of 21 image(s) are in this" in " ".join("".join(capsys.readouterr()).split())


def test_overlap_counts_the_sample_rows_a_shipped_detector_trained_on(sample_folder):
    from cifake_hub.shipped import shipped_folder
    from cifake_hub.training.leakage import overlap

    seen, rows = overlap(shipped_folder("robust"), sample_folder, "test")
    assert rows == 500 and 400 < seen < 500  # less the validation slice the run held out
    assert overlap(sample_folder, sample_folder, "test") is None  # no hashes: no claim


@pytest.mark.slow
def test_demo_with_a_shipped_detector_warns_about_the_sample(tmp_path, capsys):
    from cifake_hub.cli.main import main

    assert main(["demo", "--out", str(tmp_path / "job"), "--detector", "robust"]) == 0
    said = " ".join("".join(capsys.readouterr()).split())
    assert "of 500 test images of cifake-sample are in 'robust''s training data" in said


def test_a_missing_local_model_path_says_it_does_not_exist(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    proc = cli("predict", str(tmp_path), "--model", "./runs/../no/such/run")
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "./runs/../no/such/run does not exist" in line


def test_user_conditions_that_fail_are_one_line(small_run, small_cifake, tmp_path, capsys,
                                                monkeypatch):  # fmt: skip
    from cifake_hub.cli.main import main

    (tmp_path / "mycond.py").write_text("def boom(images):\n    raise RuntimeError('nope')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "raises.txt").write_text("boom=mycond:boom\n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\xda\xff\xfe binary")
    expected = {"raises.txt": "raised RuntimeError: nope", "binary.txt": "is not text"}
    for name, message in expected.items():
        args = ["--dataset", str(small_cifake), "--out", str(tmp_path / "e"), "--conditions",
                str(tmp_path / name), "--bootstrap", "10"]  # fmt: skip
        assert main(["evaluate", str(small_run), *args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_a_cam_layer_without_a_feature_map_is_one_line(small_run, tmp_path, capsys):
    import shutil

    from cifake_hub.cli.main import main
    from cifake_hub.training.models import load_model, resolve_model

    model = load_model(resolve_model(small_run))
    flat = next(layer.name for layer in model.layers if len(layer.output.shape) == 2)
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    assert main(["explain", str(run), "--layer", flat, "--n", "4"]) == 1
    err = capsys.readouterr().err
    assert f"layer {flat!r} has no spatial feature map" in err and len(err.splitlines()) == 1


# Runs a command and prints the peak RSS (kB) of it and its workers, as its last stderr line.
PEAK = """import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)"""


def test_a_zip_member_of_gigabytes_is_refused_by_its_declared_size(tmp_path):
    """2 GB of zeros deflate to about 2 MB: refused from the zip's directory, never inflated."""
    import json
    import zipfile

    src = factories.make_kaggle_files()
    path = tmp_path / "k.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in src.files.items():
            z.writestr(name, data)
        with z.open("train/REAL/0999 (1).jpg", "w", force_zip64=True) as member:
            block = bytes(2**24)
            for _ in range(128):  # 2 GiB
                member.write(block)
    assert path.stat().st_size < 8 * 2**20
    out = tmp_path / "ds"
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, sys.executable, "-m", "cifake_hub.cli.main",
         "import-kaggle", str(path), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    peak_kb = int(proc.stderr.strip().splitlines()[-1])
    assert peak_kb < 1024 * 1024, f"peak RSS {peak_kb} kB"  # far below the 2 GB declared
    report = json.loads((out / "import_report.json").read_text())
    problems = {i["file"]: i["problem"] for i in report["invalid"]}
    assert "more than the 64 MB an image may take" in problems["train/REAL/0999 (1).jpg"]


def test_a_finished_run_is_marked_complete_and_a_resume_unmarks_it(small_run, tmp_path):
    import shutil

    from cifake_hub.outputs import read_marker, writes
    from cifake_hub.training.run_folder import RunFolder

    marker = read_marker(small_run)
    assert marker["complete"] is True and RunFolder.MODEL in marker["files"]
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    seen = []

    @writes("out", finishes=RunFolder.KIND)
    def resume(out):  # what a resumed command sees while it works
        seen.append(read_marker(out))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resume(run)
    assert seen[0]["complete"] is False and seen[0]["files"] == marker["files"]
    assert read_marker(run)["complete"] is False  # killed: not whole
