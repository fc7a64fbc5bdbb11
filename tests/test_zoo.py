"""`cifake zoo train` (the generator families the toolkit trains itself) and the rows they make
in `cifake build`: real torch training on small data, real diffusers schedulers and pipeline
folders, real builds."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cifake_hub.outputs import read_marker
from cifake_hub.zoo.config import ZooConfig
from cifake_hub.zoo.families import FAMILIES
from cifake_hub.zoo.folder import GeneratorFolder
from cifake_hub.zoo.train import train_generator
from tests import factories

CIFAKE = str(Path(sys.executable).parent / "cifake")
ENV = factories.BUILD_ENV  # one thread: the same pixels in every process


def weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    gen = GeneratorFolder(folder)
    files = [gen.weights] if gen.weights.exists() else sorted(gen.pipeline.rglob("*.safetensors"))
    out = {}
    for f in files:
        out.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    return out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_tiny_family_writes_a_generator_folder(zoo, family):
    from cifake_hub.cards.generator_card import write_generator_card

    folder = GeneratorFolder(zoo / family)
    assert read_marker(folder.path)["kind"] == "generator"
    config = ZooConfig.load(folder.config_path)
    assert (config.family, config.preset, config.epochs) == (family, "tiny", 3)
    if family == "ddpm":  # a diffusers pipeline folder, loadable by diffusers itself
        from diffusers import DDPMPipeline, UNet2DModel

        pipe = DDPMPipeline.from_pretrained(folder.pipeline)
        assert isinstance(pipe.unet, UNet2DModel) and pipe.unet.config.num_class_embeds == 10
        assert not folder.weights.exists()
    else:
        assert folder.weights.exists()
    assert [folder.epoch_grid(e).exists() for e in (1, 2, 3)] == [True] * 3
    from PIL import Image

    # The final grid: ten samples of each class, a row per class (2x, 2-pixel gaps).
    assert Image.open(folder.grid).size == (10 * 66 + 2, 10 * 66 + 2)
    assert not folder.checkpoint.exists()  # finished: the exported weights are the result
    t = folder.training()
    assert t["epochs_done"] == 3 and len(t["history"]) == 3
    assert t["train_images"] == 60  # the tiny preset's cap, REAL rows only
    q = t["quality"]
    assert q["metric"] == "swd" and q["swd"] > 0 and q["swd_real_vs_real"] > 0
    card = write_generator_card(folder.path).read_text()
    assert f"`{family}`" in card and "SWD" in card and "samples.png" in card
    assert FAMILIES[family].pixels in card


def test_generators_learn_from_real_rows_only(tmp_path):
    """A dataset whose REAL rows are black and FAKE rows white: a VAE trained long enough on
    it makes dark images, so it never saw a FAKE row."""
    from cifake_hub.builders.folder import DatasetFolderWriter
    from cifake_hub.schema import make_row
    from cifake_hub.zoo.sample import ZooGenerator

    data = tmp_path / "bw"
    with DatasetFolderWriter(data) as writer:
        for label, value in ((0, 255), (1, 0)):
            for c in range(10):
                for i in range(6):
                    px = np.full((32, 32, 3), value, np.uint8)
                    writer.add("train", make_row(factories.png_bytes(px), label, c,
                                                 source="t", source_index=i))  # fmt: skip
        writer.close()
    config = ZooConfig("vae", preset="tiny", epochs=30, lr=3e-3)
    train_generator(data, tmp_path / "vae", config)
    images = ZooGenerator(tmp_path / "vae").sampler.generate(list(range(10)), list(range(10)))
    assert images.mean() < 60


@pytest.mark.parametrize("family", list(FAMILIES))
def test_resume_after_a_stop_mid_epoch_is_identical(zoo, small_cifake, tmp_path, family):
    class Stop(Exception):
        pass

    def stop_in_epoch_2(epoch, batch, batches, losses):
        if epoch == 2 and batch == 2:
            raise Stop

    out = tmp_path / family
    with pytest.raises(Stop):
        train_generator(small_cifake, out, ZooConfig(family, preset="tiny"), stop_in_epoch_2)
    assert GeneratorFolder(out).checkpoint.exists()
    outcome = train_generator(small_cifake, out, ZooConfig(family, preset="tiny"))
    assert (outcome.resumed_from, outcome.epochs_run) == (1, 2)
    a, b = weights(zoo / family), weights(out)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert GeneratorFolder(out).training()["epochs_done"] == 3


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sigkill_then_the_same_command_resumes_identically(small_cifake, tmp_path, family):
    def cmd(out):
        return [CIFAKE, "zoo", "train", family, str(small_cifake), "--out", str(out),
                "--preset", "tiny", "--epochs", "8"]  # fmt: skip

    subprocess.run(cmd(tmp_path / "whole"), check=True, capture_output=True, env=ENV)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd(killed), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoint = GeneratorFolder(killed).checkpoint
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run ended before its first checkpoint could be seen"
    again = subprocess.run(cmd(killed), capture_output=True, text=True, env=ENV)
    assert again.returncode == 0, again.stderr
    assert "resuming after epoch" in again.stderr
    a, b = weights(tmp_path / "whole"), weights(killed)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def run_cli(*args):
    return subprocess.run([CIFAKE, *args], capture_output=True, text=True, env=ENV)


def one_error_line(result, *needles):
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().endswith(errors[0])
    for needle in needles:
        assert needle in errors[0]


def test_bad_inputs_are_one_line(zoo, small_cifake, tmp_path):
    one_error_line(run_cli("zoo", "train", "gan9", str(small_cifake), "--out", str(tmp_path / "x")),
                   "gan9")  # fmt: skip
    # A dataset without REAL rows.
    from cifake_hub.builders.folder import DatasetFolderWriter
    from cifake_hub.schema import make_row

    fakes = tmp_path / "fakes"
    with DatasetFolderWriter(fakes) as writer:
        for i in range(4):
            px = np.zeros((32, 32, 3), np.uint8)
            writer.add("train", make_row(factories.png_bytes(px), 0, i, source="t", source_index=i))
        writer.close()
    one_error_line(
        run_cli("zoo", "train", "vae", str(fakes), "--out", str(tmp_path / "v"), "--preset",
                "tiny"), "REAL"
    )  # fmt: skip
    # Resuming with other options.
    stopped = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):

        def stop(epoch, batch, batches, losses):
            if epoch == 2:
                raise KeyboardInterrupt

        train_generator(small_cifake, stopped, ZooConfig("vae", preset="tiny"), stop)
    other = run_cli("zoo", "train", "vae", str(small_cifake), "--out", str(stopped), "--preset",
                    "tiny", "--lr", "0.01")  # fmt: skip
    one_error_line(other, "lr", "same options")
    # A damaged checkpoint: one line, and the file is left for the user.
    checkpoint = GeneratorFolder(stopped).checkpoint
    checkpoint.write_bytes(b"not a checkpoint")
    damaged = run_cli("zoo", "train", "vae", str(small_cifake), "--out", str(stopped),
                      "--preset", "tiny")  # fmt: skip
    one_error_line(damaged, "damaged", str(checkpoint))
    assert checkpoint.read_bytes() == b"not a checkpoint"
    # A folder of another kind as --out, and as a generator.
    one_error_line(
        run_cli("zoo", "train", "vae", str(small_cifake), "--out", str(small_cifake)), "dataset"
    )


def build(out: Path, tar: Path, *generators: str, extra: tuple[str, ...] = ()):
    cmd = factories.build_cmd(out, tar, *extra, generators=generators)
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV)


def rows(folder: Path) -> list[dict]:
    return [r for p in sorted((folder / "data").glob("*.parquet"))
            for r in pq.read_table(p).to_pylist()
            for r in [{**r, "split": p.name.split("-")[0]}]]  # fmt: skip


def test_build_with_zoo_generators_and_aligned_twins(zoo, cifar_tar, tmp_path):
    from cifake_hub.zoo.sample import ZooGenerator

    gens = [f"{zoo / 'dcgan'}", f"{zoo / 'upconv-gan'}", f"aligned:{zoo / 'vae'}",
            f"aligned:{zoo / 'ddpm'},t=500"]  # fmt: skip
    out = tmp_path / "built"
    result = build(out, cifar_tar.path, *gens, extra=("--per-class-train", "4"))
    assert result.returncode == 0, result.stderr
    got = rows(out)
    fake = [r for r in got if r["label"] == 0]
    real = [r for r in got if r["label"] == 1]
    # 4 train / 2 test per class: one train image each; test to the first two.
    by_model: dict[str, int] = {}
    for r in fake:
        by_model[r["model_id"]] = by_model.get(r["model_id"], 0) + 1
    assert by_model == {"dcgan": 20, "upconv-gan": 20, "aligned:vae": 10, "aligned:ddpm": 10}
    hashes = {f: ZooGenerator(zoo / f).weights_hash for f in FAMILIES}
    for r in fake:
        family = r["family"].removeprefix("aligned-")
        assert r["weights_sha256"] == hashes[family]
        assert r["render_size"] == 32
        if r["model_id"].startswith("aligned:"):
            # The twin names its source row: same split, class and position in the class.
            position = int(r["image"]["path"].rsplit("-", 1)[1].split(".")[0])
            of_class = [
                s for s in real if (s["split"], s["category"]) == (r["split"], r["category"])
            ]
            source = of_class[position]
            assert r["source"] == f"aligned:{source['source']}"
            assert (r["source_file"], r["source_index"]) == (
                source["source_file"], source["source_index"])  # fmt: skip
            assert (r["seed"] is None) == (family == "vae")
            if family == "ddpm":
                # The shared --steps 2 of the test build: the DDPM's DDIM steps.
                assert r["scheduler"] == "DDIMScheduler(t=500)" and r["steps"] == 2
        else:
            assert r["source"] == "zoo" and r["seed"] is not None
    # Same seed, same image: a second build makes every FAKE row byte for byte.
    again = tmp_path / "again"
    assert build(again, cifar_tar.path, *gens, extra=("--per-class-train", "4")).returncode == 0
    key = lambda r: (r["split"], r["model_id"], r["category"], r["source_index"])  # noqa: E731
    first = {key(r): r["image"]["bytes"] for r in fake}
    second = {key(r): r["image"]["bytes"] for r in rows(again) if r["label"] == 0}
    assert first == second
    # The card's table names each zoo generator, its family and its training.
    subprocess.run([CIFAKE, "card", "dataset", str(out)], check=True, env=ENV,
                   capture_output=True)  # fmt: skip
    card = (out / "README.md").read_text()
    for name in ("`dcgan`", "`aligned:vae`", "twins of the REAL rows", "folder `ddpm`"):
        assert name in card


def test_aligned_twins_are_close_to_their_real_rows(zoo, small_cifake):
    """A DDPM twin at a small t stays near its REAL image; at a large t it does not."""
    from cifake_hub.training.data import load_splits, to_arrays
    from cifake_hub.zoo.sample import ZooGenerator

    gen = ZooGenerator(zoo / "ddpm")
    x = to_arrays(load_splits(small_cifake)["train"]).x[:8]
    near = gen.sampler.reconstruct(x, [0] * 8, list(range(8)), t=50)
    far = gen.sampler.reconstruct(x, [0] * 8, list(range(8)), t=950)
    d_near = np.abs(near.astype(int) - x).mean()
    d_far = np.abs(far.astype(int) - x).mean()
    assert d_near < d_far


def test_build_refuses_bad_zoo_generators(zoo, cifar_tar, small_cifake, tmp_path):
    dcgan = build(tmp_path / "a", cifar_tar.path, f"aligned:{zoo / 'dcgan'}")
    one_error_line(dcgan, "cannot reconstruct")
    other_kind = build(tmp_path / "b", cifar_tar.path, f"aligned:{small_cifake}")
    one_error_line(other_kind, "dataset")


def test_generator_round_trip_through_the_hub(zoo, cifar_tar, tmp_path, hub):
    """`cifake-publish --generator` pushes a generator folder as a model repo, verifies it from
    a fresh process, and `cifake build --generator NS/NAME` then makes the same images from
    the Hub as from the local folder."""
    from tests.conftest import hub_client_env

    env = {**hub_client_env(hub, tmp_path / "hf-home"), "OMP_NUM_THREADS": "1"}
    repo = "tester/zoo-ddpm"
    pushed = subprocess.run(
        [CIFAKE, "publish", "--generator", str(zoo / "ddpm"), "--generator-repo", repo,
         "--endpoint", hub.endpoint],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert "10 samples equal" in pushed.stdout
    files = {p for p in hub.state.files("model", repo, "main") if p != ".gitattributes"}
    assert {"zoo_config.json", "training.json", "samples.png", "README.md",
            "pipeline/model_index.json"} <= files  # fmt: skip
    assert not any(p.startswith(("checkpoint", "samples/", ".cifake")) for p in files)
    card = hub.state.files("model", repo, "main")["README.md"].decode()
    assert f"--generator {repo}" in card and str(tmp_path) not in card
    built = {}
    for name, spec in (("hub", repo), ("local", str(zoo / "ddpm"))):
        out = tmp_path / name
        cmd = factories.build_cmd(out, cifar_tar.path, generators=(spec,))
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        built[name] = {
            (r["split"], r["category"], r["source_index"]): (r["image"]["bytes"], r["model_id"])
            for r in rows(out)
            if r["label"] == 0
        }
    assert {k: v[0] for k, v in built["hub"].items()} == {
        k: v[0] for k, v in built["local"].items()
    }
    assert {v[1] for v in built["hub"].values()} == {repo}


def test_a_generator_still_training_is_refused_by_build(small_cifake, cifar_tar, tmp_path):
    gen = tmp_path / "half"
    with pytest.raises(KeyboardInterrupt):

        def stop(epoch, batch, batches, losses):
            raise KeyboardInterrupt

        train_generator(small_cifake, gen, ZooConfig("vae", preset="tiny"), stop)
    one_error_line(build(tmp_path / "d", cifar_tar.path, str(gen)), "has not finished")
