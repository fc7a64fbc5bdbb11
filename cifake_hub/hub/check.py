"""Check a publish from a fresh process: ``python -m cifake_hub.hub.check SPEC.json``.

Run by `cifake_hub.hub.publish.verify` with an empty Hub and datasets cache, so everything is
downloaded again: the dataset through ``load_dataset(repo_id)`` and the model repo through
``snapshot_download``. Prints one JSON line with what was compared and any problems.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cifake_hub.outputs import read_json

SAMPLE = 64


def sample_indices(n: int, k: int = SAMPLE) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, n - 1, min(k, n))}) if n else []


def check_dataset(spec: dict[str, Any], local: Any) -> dict[str, Any]:
    import datasets

    remote = datasets.load_dataset(spec["repo"], revision=spec["revision"])
    problems = []
    if sorted(remote) != sorted(local):
        problems.append(f"splits differ: hub {sorted(remote)} vs local {sorted(local)}")
    rows, sampled = {}, 0
    for split in sorted(set(remote) & set(local)):
        r, lo = remote[split], local[split]
        rows[split] = len(r)
        if len(r) != len(lo):
            problems.append(f"{split}: {len(r)} rows on the hub, {len(lo)} here")
            continue
        if r.features != lo.features:
            problems.append(f"{split}: features differ")
            continue
        idx = sample_indices(len(r))
        raw = datasets.Image(decode=False)
        r_rows = r.cast_column("image", raw).select(idx)
        lo_rows = lo.cast_column("image", raw).select(idx)
        for i, a, b in zip(idx, r_rows, lo_rows, strict=True):
            if a["image"]["bytes"] != b["image"]["bytes"] or a["label"] != b["label"]:
                problems.append(f"{split} row {i} differs")
        sampled += len(idx)
    return {"rows": rows, "sampled_images": sampled, "problems": problems}


def download_and_compare(spec: dict[str, Any]) -> tuple[Path, dict[str, str], list[str]]:
    """(the repo downloaded, its file hashes, problems): the repo must hold exactly the
    staged files."""
    from huggingface_hub import snapshot_download

    from cifake_hub.hub.targets import tree

    folder = Path(
        snapshot_download(
            spec["repo"], repo_type=spec.get("repo_type", "model"), revision=spec["revision"]
        )
    )
    got = {k: v[1] for k, v in tree(folder).items() if k != ".gitattributes"}
    want = spec["tree"]
    problems = [f"{p} missing on the hub" for p in sorted(set(want) - set(got))]
    problems += [
        f"{p} on the hub is not the staged file" for p in want if p in got and got[p] != want[p]
    ]
    problems += [f"unexpected {p} on the hub" for p in sorted(set(got) - set(want))]
    return folder, got, problems


def check_model(spec: dict[str, Any], local: Any) -> dict[str, Any]:
    from cifake_hub.training.backend import import_keras

    keras = import_keras()
    folder, got, problems = download_and_compare(spec)
    split = "test" if "test" in local else next(iter(local))
    table = local[split].select(sample_indices(len(local[split])))
    x = np.stack([np.asarray(im.convert("RGB")) for im in table["image"]])
    # The Hub layout is what keras.saving.load_model("hf://REPO") reads.
    mine = keras.saving.load_model(spec["model"]).predict(x, verbose=0)
    theirs = keras.saving.load_model(folder).predict(x, verbose=0)
    diff = float(np.abs(mine - theirs).max())
    if diff > 1e-6:
        problems.append(f"predictions differ by up to {diff:.2g}")
    return {
        "files": len(got),
        "images_predicted": len(x),
        "max_abs_diff": diff,
        "problems": problems,
    }


def check_generator(spec: dict[str, Any], local: Any) -> dict[str, Any]:
    """The generator loaded from the Hub makes the same images as the local folder."""
    from cifake_hub.zoo.sample import ZooGenerator

    folder, got, problems = download_and_compare(spec)
    classes, seeds = list(range(10)), [1000 + i for i in range(10)]
    mine = ZooGenerator(spec["folder"]).sampler.generate(classes, seeds)
    theirs = ZooGenerator(folder).sampler.generate(classes, seeds)
    if not np.array_equal(mine, theirs):
        problems.append("the generator from the hub makes other images than the local one")
    return {"files": len(got), "images_generated": len(seeds), "problems": problems}


def check_space(spec: dict[str, Any], local: Any) -> dict[str, Any]:
    """The Space's ``app.py``, loaded as the Space runs it (its model from the model repo),
    answers one image of the embedded sample as the local model does."""
    import runpy
    import tempfile
    import zipfile

    from cifake_hub.images import read_rgb
    from cifake_hub.shipped import SAMPLE
    from cifake_hub.training.backend import import_keras

    folder, got, problems = download_and_compare(spec)
    with zipfile.ZipFile(SAMPLE) as archive:
        data = archive.read(sorted(n for n in archive.namelist() if "/FAKE/" in n)[0])
    with tempfile.TemporaryDirectory(prefix="cifake-check-space-") as tmp:
        image = Path(tmp) / "fake.jpg"
        image.write_bytes(data)
        app = runpy.run_path(str(folder / "app.py"))
        (record,) = app["answer"]([image])
    (answer,) = record["detectors"].values()
    x = read_rgb(data)[None]
    keras = import_keras()
    want = 1.0 - float(keras.saving.load_model(spec["model"]).predict(x, verbose=0).ravel()[0])
    if answer is None or abs(answer["p_fake"] - want) > 1e-6:
        problems.append(f"app.py answered {answer}, the local model P(FAKE) {want}")
    return {"files": len(got), "images_predicted": 1, "problems": problems}


def run_check(spec: dict[str, Any], local: Any) -> dict[str, Any]:
    """The check a target named (``module:function``), run on its spec."""
    module, _, name = spec["check"].partition(":")
    check: Callable[[dict[str, Any], Any], dict[str, Any]] = getattr(
        importlib.import_module(module), name
    )
    return check(spec, local)


def main(argv: list[str]) -> int:
    import datasets

    spec = read_json(Path(argv[0]))
    local = datasets.load_dataset(spec["dataset"]) if spec["dataset"] else None
    result = {t["kind"]: run_check(t, local) for t in spec["targets"]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
