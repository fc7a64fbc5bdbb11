from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cifake_hub.builders.generate import (
    FakeImageGenerator,
    GeneratorConfig,
    Job,
    image_seed,
)
from cifake_hub.builders.prompts import prompt_for
from cifake_hub.errors import CifakeError, ConfigError
from cifake_hub.images import resize_to_final
from cifake_hub.schema import TINY_MODEL_ID, TINY_MODEL_IDS

CFG = GeneratorConfig(model_id="tiny", steps=4, batch_size=3, seed=7)


@pytest.fixture(scope="module")
def generator():
    return FakeImageGenerator(CFG)


def _pixels(row):
    return np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))


def test_rows_have_full_provenance(generator):
    jobs = [Job("train", 3, 0), Job("train", 3, 1), Job("test", 9, 0)]
    out = generator.generate(jobs)
    for g, job in zip(out, jobs, strict=True):
        row = g.row
        assert _pixels(row).shape == (32, 32, 3)
        assert (
            row["label"] == 0
            and row["category"] == job.category
            and row["source_index"] == job.index
        )
        assert row["prompt"] == prompt_for(job.category, job.index)
        assert row["seed"] == image_seed(7, job) and g.attempts == 1
        assert (row["model_id"], row["scheduler"], row["steps"]) == (
            TINY_MODEL_ID,
            "EulerAncestralDiscreteScheduler",
            4,
        )
        assert (row["render_size"], row["guidance_scale"], row["batch_size"]) == (64, 7.5, 3)
        assert row["batch_index"] == jobs.index(job)


def test_same_seed_same_bytes_and_alone_equals_batched(generator):
    jobs = [Job("train", 0, 5), Job("train", 1, 5), Job("train", 2, 5)]
    first = [g.row["image"]["bytes"] for g in generator.generate(jobs)]
    again = [g.row["image"]["bytes"] for g in generator.generate(jobs)]
    assert first == again
    assert len(set(first)) == 3  # different seeds, different images
    for i in range(3):  # each image made again alone, from its row's batch size and index
        row = generator.generate(jobs)[i].row
        alone = generator.regenerate(jobs[i], row["batch_size"], row["batch_index"])
        assert alone.row["image"]["bytes"] == first[i]
    other = generator.generate([Job("test", 4, 0), jobs[1], Job("test", 4, 1)])
    assert other[1].row["image"]["bytes"] == first[1]  # neighbours in the batch do not matter


@pytest.mark.parametrize(
    ("name", "pipeline", "family", "steps", "guidance"),
    [
        ("tiny-sdxl", "StableDiffusionXLPipeline", "sdxl", 50, 5.0),
        ("tiny-pixart", "PixArtAlphaPipeline", "pixart", 20, 4.5),
    ],
)
def test_other_pipeline_families_run_with_their_policy(name, pipeline, family, steps, guidance):
    from cifake_hub.builders.generate import resolve_settings

    gen = FakeImageGenerator(GeneratorConfig(model_id=name, batch_size=2, seed=3))
    assert type(gen.pipe).__name__ == pipeline
    run = gen.settings
    # Their schedulers (Euler, DPM-Solver) can be swapped for Euler Ancestral, as in the paper.
    assert (run.family, run.scheduler) == (family, "EulerAncestralDiscreteScheduler")
    assert (run.steps, run.guidance_scale, run.render_size) == (steps, guidance, 64)
    mine = resolve_settings(GeneratorConfig(model_id=name, steps=2, guidance_scale=1.5), gen.pipe)
    assert (mine.steps, mine.guidance_scale) == (2, 1.5)  # the user's values win
    quick = FakeImageGenerator(GeneratorConfig(model_id=name, steps=2, batch_size=2, seed=3))
    jobs = [Job("train", 1, 0), Job("train", 2, 0)]
    rows = [g.row for g in quick.generate(jobs)]
    assert [_pixels(r).shape for r in rows] == [(32, 32, 3)] * 2
    assert rows[0]["image"]["bytes"] != rows[1]["image"]["bytes"]
    assert (rows[0]["model_id"], rows[0]["steps"], rows[0]["scheduler"]) == (
        TINY_MODEL_IDS[name],
        2,
        "EulerAncestralDiscreteScheduler",
    )
    again = quick.regenerate(jobs[1], rows[1]["batch_size"], rows[1]["batch_index"])
    assert again.row["image"]["bytes"] == rows[1]["image"]["bytes"]


def test_blacked_out_image_is_made_again():
    gen = FakeImageGenerator(CFG)
    real_render = gen.render
    calls = []

    def black_first(prompts, seeds):  # the safety checker blacks out the first render of job 0
        images, black = real_render(prompts, seeds)
        if not calls:
            images[0] = 0
            black[0] = True
        calls.append(seeds)
        return images, black

    gen.render = black_first
    jobs = [Job("train", 5, 0), Job("train", 5, 1)]
    out = gen.generate(jobs)
    assert out[0].attempts == 2 and out[1].attempts == 1 and gen.blacked_out == 1
    assert out[0].row["seed"] == image_seed(7, jobs[0], attempt=1) != image_seed(7, jobs[0])
    assert calls[1] == [image_seed(7, jobs[0], attempt=1)]  # only the blacked-out one again
    assert _pixels(out[0].row).max() > 0


def test_black_every_time_is_an_error():
    gen = FakeImageGenerator(
        GeneratorConfig(model_id="tiny", steps=2, batch_size=1, max_attempts=2)
    )
    gen.render = lambda prompts, seeds: (
        np.zeros((len(seeds), 64, 64, 3), np.uint8),
        [True] * len(seeds),
    )
    with pytest.raises(CifakeError, match="blacked out by the safety checker 2 times"):
        gen.generate([Job("train", 0, 0)])


def test_resize_is_bilinear_to_32():
    render = np.zeros((512, 512, 3), np.uint8)
    render[:, 256:] = 255
    small = resize_to_final(render)
    assert small.shape == (32, 32, 3)
    assert small[0, 0, 0] == 0 and small[0, 31, 0] == 255 and 0 < small[0, 15:17, 0].mean() < 255


def test_config_validation_and_offline_error():
    with pytest.raises(ConfigError, match="multiple of 8"):
        GeneratorConfig(render_size=100)
    with pytest.raises(ConfigError, match="device"):
        GeneratorConfig(device="tpu")
    with pytest.raises(CifakeError, match="HF_HUB_OFFLINE=1"):
        FakeImageGenerator(GeneratorConfig(device="cpu"))  # SD 1.4 cannot be downloaded here
