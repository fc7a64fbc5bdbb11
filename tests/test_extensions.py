"""Every extension point ARCHITECTURE.md names is one registry entry: a module outside the
package adds one of each (a condition kind, a diffusers generator family, a Hub target with
its own check, a CAM method, a recipe, a command) and each works end to end, with no other
file edited."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cifake_hub.cli.main import main
from tests.conftest import HUB_TOKEN, hub_client_env
from tests.factories import BUILD_PER_CLASS, make_cifar_tar

EXTENSION = "cifake_ext_test"  # the module name: written into tmp_path for each test
SOURCE = textwrap.dedent(
    '''
    """One extension of each kind, as a user's own module would add them."""
    import dataclasses
    import sys
    from pathlib import Path

    import numpy as np

    from cifake_hub.builders.generate import Family, register_family
    from cifake_hub.builders.tiny_pipeline import build_tiny_pipeline
    from cifake_hub.cli.main import register_command
    from cifake_hub.evaluate.conditions import ConditionKind, register_condition_kind
    from cifake_hub.explain.gradcam import METHODS
    from cifake_hub.hub.check import download_and_compare
    from cifake_hub.hub.targets import Target, register_target
    from cifake_hub.training.recipes import RECIPES, get_recipe

    # A condition kind: posterize:B keeps B bits per channel.
    register_condition_kind(
        ConditionKind(
            "posterize", "B", "bits", "an integer in 1..8",
            lambda n: n.is_integer() and 1 <= n <= 8,
            lambda n, seed: f"keep the top {int(n)} bits of every channel",
            lambda n, seed, noise: lambda x, rows: x & np.uint8((0xFF << (8 - int(n))) & 0xFF),
            unchanged_at=8.0,
        )
    )


    # A diffusers family, with a random-weight twin for offline runs.
    def _dummy_pipeline():
        from diffusers import StableDiffusionPipeline

        class DummyPipeline(StableDiffusionPipeline):
            pass

        return DummyPipeline(**build_tiny_pipeline().components)


    register_family(Family("dummy", 3, 2.0, ("DummyPipeline",), ("tiny-dummy", _dummy_pipeline)))

    # A zoo family: DCGAN's networks and step with a nearest-upsampling generator.
    from cifake_hub.zoo.families import DCGAN, register_family as register_zoo_family


    class NearestGAN(DCGAN):
        name = "nearest-gan"
        pixels = "nearest upsampling + 3x3 convolutions (GAN)"

        def build_nets(self, width, latent):
            import torch
            from torch import nn

            nets = super().build_nets(width, latent)

            class G(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = nn.Linear(latent + 10, 4 * width * 16)
                    self.net = nn.Sequential(
                        nn.Upsample(scale_factor=8, mode="nearest"),
                        nn.Conv2d(4 * width, 3, 3, 1, 1),
                        nn.Tanh(),
                    )

                def forward(self, z, y):
                    one_hot = nn.functional.one_hot(y, 10).float()
                    return self.net(self.fc(torch.cat([z, one_hot], 1)).view(-1, 4 * width, 4, 4))

            return {**nets, "generator": G()}


    register_zoo_family(NearestGAN())

    # A CAM method: the channel mean of the activations, gradients unused.
    METHODS["channel-mean"] = lambda ops, activations, gradients: ops.mean(activations, axis=-1)

    # A recipe: robust's settings, smaller and shorter.
    RECIPES["pocket"] = dataclasses.replace(
        get_recipe("robust"), name="pocket", description="a pocket-sized robust",
        widths=(8, 16), epochs=1, batch_size=32,
    )

    # A command.
    NAME = "hello"
    HELP = "say hello"


    def register(sub):
        p = sub.add_parser(NAME, help=HELP)
        p.add_argument("who")
        p.set_defaults(func=lambda args: print(f"hello {args.who}") or 0)


    register_command(sys.modules[__name__])


    # A Hub target: a notes repo beside the model, with its own fresh-process check.
    class NotesTarget(Target):
        kind = "notes"
        repo_type = "model"
        steps = ("notes",)
        check = __name__ + ":check_notes"

        @classmethod
        def from_config(cls, cfg):
            return None if cfg.model_repo is None else cls(cfg, cfg.model_repo + "-notes")

        def stage(self, out):
            out.mkdir(parents=True, exist_ok=True)
            (out / "NOTES.md").write_text(f"notes on {self.cfg.model_repo}\\n")
            self.staged = out

        def push(self, session):
            self.upload_staged(session, "Upload notes")

        def check_spec(self):
            return self.staged_spec(model_repo=self.cfg.model_repo)

        def verified(self, check):
            return f"{check['files']} notes equal"


    def check_notes(spec, local):
        folder, got, problems = download_and_compare(spec)
        if (folder / "NOTES.md").read_text() != f"notes on {spec['model_repo']}\\n":
            problems.append("NOTES.md differs")
        return {"files": len(got), "problems": problems}


    register_target(NotesTarget)
    '''
)


@pytest.fixture
def extension(tmp_path, monkeypatch):
    """The extension module imported; every registry as it was afterwards."""
    from cifake_hub.builders import generate
    from cifake_hub.cli import main as cli_main
    from cifake_hub.evaluate import conditions
    from cifake_hub.explain import gradcam
    from cifake_hub.hub import targets
    from cifake_hub.schema import TINY_MODEL_IDS
    from cifake_hub.training import recipes
    from cifake_hub.zoo import families

    registries = [
        families.FAMILIES,
        conditions.CONDITION_KINDS,
        generate.FAMILIES,
        TINY_MODEL_IDS,
        gradcam.METHODS,
        recipes.RECIPES,
        cli_main.COMMANDS,
        targets.TARGETS,
    ]
    saved = [r.copy() for r in registries]
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / f"{EXTENSION}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "ext"))
    yield importlib.import_module(EXTENSION)
    sys.modules.pop(EXTENSION, None)
    for registry, before in zip(registries, saved, strict=True):
        registry.clear()
        if isinstance(registry, dict):
            registry.update(before)
        else:
            registry.extend(before)


def test_a_command(extension, capsys):
    assert main(["hello", "world"]) == 0
    assert capsys.readouterr().out == "hello world\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "say hello" in capsys.readouterr().out


def test_a_condition_kind(extension, small_run, small_cifake, tmp_path):
    out = tmp_path / "evaluation"
    args = ["evaluate", str(small_run), "--dataset", str(small_cifake), "--out", str(out)]
    assert main([*args, "--conditions", "clean,posterize:2,posterize:9"]) == 1  # 9 bits: refused
    assert main([*args, "--conditions", "clean,posterize:2,posterize:4"]) == 0
    report = json.loads((out / "evaluation.json").read_text())
    posterized = report["conditions"]["posterize:2"]
    assert posterized["definition"] == "keep the top 2 bits of every channel"
    clean = report["conditions"]["clean"]["metrics"]
    assert posterized["metrics"]["roc_auc"] != clean["roc_auc"]  # the images did change
    assert (out / "robustness.png").stat().st_size > 0


def test_a_cam_method(extension, small_run, small_cifake, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    args = ["explain", str(run), "--dataset", str(small_cifake), "--n", "8"]
    assert main([*args, "--method", "channel-mean", "--no-sanity", "--road-images", "8"]) == 0
    summary = json.loads((run / "gradcam" / "summary.json").read_text())
    assert summary["method"] == "channel-mean"
    assert (run / "gradcam" / "figure6.png").exists()


def test_a_recipe(extension, small_cifake, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(small_cifake), "--recipe", "pocket", "--out", str(out)]) == 0
    config = json.loads((out / "run_config.json").read_text())
    assert (config["recipe"], config["recipe_data"]["widths"]) == ("pocket", [8, 16])
    assert (out / "model.keras").exists()


def test_a_generator_family(extension, tmp_path):
    tar = make_cifar_tar(tmp_path / "cifar.tar.gz").path
    out = tmp_path / "built"
    args = ["build", "--out", str(out), "--generator", "tiny-dummy", "--real", f"cifar-tar:{tar}"]
    sizes = ["--per-class-train", str(BUILD_PER_CLASS["train"]), "--per-class-test", "0"]
    assert main([*args, *sizes, "--batch-size", "2", "--unit-size", "5"]) == 0
    import datasets

    fake = datasets.load_dataset(str(out))["train"].filter(lambda r: r["label"] == 0)
    assert fake.num_rows == 10 * BUILD_PER_CLASS["train"]
    # The family's own defaults (3 steps) and its tiny twin's id on every row.
    assert set(fake["model_id"]) == {"tiny-random-dummy"}
    assert set(fake["steps"]) == {3}


def test_a_zoo_family(extension, small_cifake, tmp_path):
    from cifake_hub.zoo.sample import ZooGenerator

    out = tmp_path / "gen"
    argv = ["zoo", "train", "nearest-gan", str(small_cifake), "--preset", "tiny", "--out", str(out)]
    assert main(argv) == 0
    generator = ZooGenerator(out)
    assert generator.family == "nearest-gan"
    images = generator.sampler.generate([0, 1, 2], [5, 6, 5])
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert not np.array_equal(images[0], images[1])
    assert "nearest upsampling" in (out / "README.md").read_text()


def test_a_hub_target_with_its_own_check(extension, small_run, small_cifake, tmp_path, hub):
    env = hub_client_env(hub, tmp_path / "hf-home", HUB_TOKEN)
    env["PYTHONPATH"] = f"{tmp_path / 'ext'}:{env.get('PYTHONPATH', '')}"
    script = (
        f"import {EXTENSION}, sys; from cifake_hub.cli.publish import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    repos = ["--dataset-repo", "tester/data", "--model-repo", "tester/cnn"]
    done = subprocess.run(
        [sys.executable, "-c", script, "--dataset", str(small_cifake), "--run", str(small_run),
         *repos, "--endpoint", hub.endpoint],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 notes equal" in done.stdout  # its check ran in the fresh verifying process
    notes = hub.state.files("model", "tester/cnn-notes", "main")
    assert notes["NOTES.md"] == b"notes on tester/cnn\n"


def test_the_registries_are_as_before_without_the_extension():
    from cifake_hub.builders.generate import FAMILIES
    from cifake_hub.training.recipes import RECIPES

    assert "pocket" not in RECIPES and "dummy" not in FAMILIES
    assert dataclasses.is_dataclass(RECIPES["robust"])
