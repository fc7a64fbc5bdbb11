"""Where a detector comes from: a shipped name, a run folder, a ``.keras`` file or a Hub
model repo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifake_hub.errors import CifakeError
from cifake_hub.outputs import claim, writes
from cifake_hub.shipped import DETECTORS, shipped_folder
from cifake_hub.training.backend import import_keras
from cifake_hub.training.run_folder import RunFolder


def resolve_model(spec: str | Path) -> Path:
    """A shipped detector's name, a run folder, a .keras file, or a Hub model repo id -> the
    .keras file. A path that exists wins over a shipped name (``--out robust`` then
    ``--model robust`` means the user's run)."""
    p = Path(spec)
    shipped = shipped_run(spec)
    if shipped is not None:
        model = RunFolder(shipped).model
        if not model.exists():
            raise CifakeError(
                f"the shipped detector {str(spec)!r} is missing from this install ({model}); "
                "reinstall cifake-hub"
            )
        return model
    if p.is_dir() and RunFolder(p).model.exists():
        return RunFolder(p).model
    if p.is_file():
        return p
    if p.exists():
        raise CifakeError(
            f"{p} holds no model.keras; give a run folder, a .keras file, a repo id or a "
            f"shipped detector ({', '.join(DETECTORS)})"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(str(spec))
    except HFValidationError:
        raise CifakeError(
            f"{spec} does not exist (no such file or folder, and not a Hub repo id); give a "
            "run folder, a .keras file, a repo id NS/NAME or a shipped detector "
            f"({', '.join(DETECTORS)})"
        ) from None

    try:
        # The model, its records, what it trained on, its evaluation and card (for the app).
        wanted = [RunFolder.MODEL, "*.json", RunFolder.TRAINING_HASHES, "evaluation/*"]
        folder = Path(snapshot_download(str(spec), allow_patterns=[*wanted, RunFolder.CARD]))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise CifakeError(
            f"cannot get model {str(spec)!r} from the Hub ({type(exc).__name__}), and there is no "
            "file or folder of that name here; give a run folder or .keras file, or check the "
            "repo id, HF_TOKEN and network"
        ) from exc
    if not RunFolder(folder).model.exists():
        raise CifakeError(f"Hub repo {spec} has no {RunFolder.MODEL}")
    return RunFolder(folder).model


def shipped_run(spec: str | Path) -> Path | None:
    """The run folder of the shipped detector ``spec`` names, unless a path of that name
    exists (then it is the user's)."""
    if str(spec) in DETECTORS and not Path(spec).exists():
        return shipped_folder(str(spec))
    return None


def resolve_run(spec: str | Path) -> Path:
    """A run folder, or a shipped detector's name -> its run folder (read it, never write)."""
    return shipped_run(spec) or Path(spec)


@writes("out")
def copy_shipped(name: str, out: str | Path) -> Path:
    """A run folder at ``out`` (new, empty, or made by this call before) holding the shipped
    detector ``name``'s files, for the commands that write into a run folder (explain,
    evaluate, cards); the shipped files are copied again over an earlier copy."""
    import shutil

    source = shipped_run(name)
    if source is None:
        raise CifakeError(f"{name!r} is not a shipped detector ({', '.join(DETECTORS)})")
    target = claim(out, RunFolder.KIND)
    for item in source.iterdir():
        if item.is_dir():
            shutil.copytree(item, target / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target / item.name)
    return target


def load_model(path: Path) -> Any:
    """The Keras model in ``path``, or one error line when it is not one."""
    keras = import_keras()
    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # Keras raises many kinds (ValueError, OSError, KeyError ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CifakeError(
            f"{path} is not a Keras model cifake can load ({type(exc).__name__}: {first}); "
            "give a run folder, a .keras file or a Hub model repo id"
        ) from exc
