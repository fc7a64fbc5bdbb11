"""The card of a zoo generator folder (GEN_DIR/README.md): family, training data, epochs,
time, the sample grid and the quality figure with its definition."""

from __future__ import annotations

from pathlib import Path

from cifake_hub.cards.common import TEMPLATES, check_repo_ids
from cifake_hub.outputs import atomic_write_text, record_file, writes
from cifake_hub.schema import CLASS_NAMES
from cifake_hub.zoo import quality as quality_module
from cifake_hub.zoo.config import ZooConfig
from cifake_hub.zoo.families import family_info
from cifake_hub.zoo.folder import GeneratorFolder

TEMPLATE = TEMPLATES / "generator_card.md.j2"


def render_generator_card(gen_dir: str | Path, repo_id: str | None = None) -> str:
    from huggingface_hub import ModelCardData
    from jinja2 import Template

    check_repo_ids(repo_id=repo_id)
    folder = GeneratorFolder(gen_dir)
    config = ZooConfig.load(folder.config_path)
    t = folder.training()
    info = family_info(config.family)
    history = t.get("history", [])
    seconds = float(t.get("train_seconds", 0))
    images = sum(h["images"] for h in history)
    data = ModelCardData(
        library_name=info.library,
        license="mit",
        tags=["cifake", "cifake-hub", "image-generation", "generator-zoo", config.family],
        pipeline_tag="unconditional-image-generation",
    )
    quality_doc = (quality_module.__doc__ or "").split("\n\n", 1)[1].strip()
    return Template(TEMPLATE.read_text()).render(
        yaml=data.to_yaml(),
        repo_id=repo_id,
        family=config.family,
        pixels=info.pixels,
        reconstructs=info.reconstructs,
        classes=", ".join(CLASS_NAMES),
        dataset=t.get("dataset") or config.dataset,
        train_images=f"{t.get('train_images', 0):,}",
        unclassed=t.get("train_images_without_class", 0),
        preset=config.preset,
        width=config.width,
        latent=config.latent,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        parameters=", ".join(f"{k} {v:,}" for k, v in t.get("parameters", {}).items()),
        epochs_done=t.get("epochs_done", 0),
        epochs=config.epochs,
        seconds=f"{seconds:,.0f} s ({seconds / 3600:.2f} h)",
        per_epoch=f"{seconds / max(len(history), 1):,.0f} s",
        throughput=f"{images / max(seconds, 1e-9):,.0f}",
        torch=t.get("torch"),
        threads=t.get("threads"),
        sampler_steps=config.sampler_steps,
        quality=t.get("quality"),
        quality_definition=" ".join(quality_doc.split()),
        use=repo_id or folder.path.as_posix(),
    )


@writes("gen_dir")
def write_generator_card(gen_dir: str | Path, repo_id: str | None = None) -> Path:
    folder = GeneratorFolder(gen_dir).require_ours()
    atomic_write_text(folder.card, render_generator_card(folder.path, repo_id))
    record_file(folder.path, GeneratorFolder.CARD)
    return folder.card
