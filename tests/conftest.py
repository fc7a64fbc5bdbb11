"""Shared fixtures. Tests run offline and build all their data themselves."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

# Read by huggingface_hub/datasets at import time: set before anything imports them.
_HF_HOME = tempfile.mkdtemp(prefix="cifake-hf-home-")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_DATASETS_CACHE"] = os.path.join(_HF_HOME, "datasets")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402

from tests import factories  # noqa: E402
from tests.hub_server import HubServer  # noqa: E402

HUB_TOKEN = "hf_testtoken_9f8e7d6c5b4a"


@pytest.fixture
def kaggle_zip(tmp_path):
    """A tiny Kaggle-layout zip with duplicates, a corrupt file and a 64x64 file."""
    return factories.make_kaggle_zip(tmp_path / "cifake.zip")


@pytest.fixture
def cifar_tar(tmp_path):
    """A tiny cifar-10-python.tar.gz (pickle batches) and the pixels it holds."""
    return factories.make_cifar_tar(tmp_path / "cifar-10-python.tar.gz")


@pytest.fixture(scope="session")
def small_cifake(tmp_path_factory):
    """A small, learnable CIFAKE dataset folder: 200 train and 40 test images."""
    return factories.make_cifake_folder(tmp_path_factory.mktemp("data") / "cifake")


@pytest.fixture(scope="session")
def small_run(small_cifake, tmp_path_factory):
    """A finished one-topology run on ``small_cifake`` (2 epochs)."""
    from cifake_hub.training.search import SearchConfig, run_search

    run_dir = tmp_path_factory.mktemp("runs") / "run"
    config = SearchConfig(topology="conv=16x2,dense=32x1", epochs=2, batch_size=32, patience=0)
    run_search(small_cifake, run_dir, config)
    return run_dir


@pytest.fixture(scope="session")
def zoo(small_cifake, tmp_path_factory):
    """Every zoo family's tiny preset, trained once on ``small_cifake``."""
    from cifake_hub.zoo.config import ZooConfig
    from cifake_hub.zoo.families import FAMILIES
    from cifake_hub.zoo.train import train_generator

    root = tmp_path_factory.mktemp("zoo")
    for family in FAMILIES:
        train_generator(small_cifake, root / family, ZooConfig(family, preset="tiny"))
    return root


@pytest.fixture(scope="session")
def mixed_build(tmp_path_factory):
    """(CIFAR tar, dataset folder) of `cifake build` with two tiny generators (factories.MIX):
    3 train and 2 test images per class and label. Copy the folder before changing it."""
    import subprocess

    root = tmp_path_factory.mktemp("build")
    tar = factories.make_cifar_tar(root / "cifar.tar.gz").path
    out = root / "ref"
    cmd = factories.build_cmd(out, tar)
    subprocess.run(cmd, check=True, capture_output=True, env=factories.BUILD_ENV)
    return tar, out


@pytest.fixture
def hub():
    """A Hub-protocol server on 127.0.0.1 that accepts ``HUB_TOKEN`` (tests/hub_server.py)."""
    with HubServer(HUB_TOKEN) as server:
        yield server


def hub_client_env(
    hub: HubServer, home: str | os.PathLike[str], token: str | None = HUB_TOKEN
) -> dict[str, str]:
    """Environment for a subprocess whose hub/datasets clients talk to ``hub`` (no other
    HF_* setting of this process leaks in: they are read once, at import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(home),
        HF_DATASETS_CACHE=os.path.join(home, "datasets"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


@pytest.fixture
def read_only(tmp_path):
    """A function making a read-only folder, holding a copy of ``source`` if given: chmod
    for a normal user, a read-only tmpfs for root (whom permission bits do not stop)."""
    import shutil

    mounts = []

    def make(name: str, source: Path | None = None) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        if os.geteuid() == 0:
            if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                              capture_output=True).returncode != 0:  # fmt: skip
                pytest.skip("root without mount(8): no way to make a read-only folder")
            mounts.append(folder)
        if source is not None:
            shutil.copytree(source, folder, dirs_exist_ok=True)
        if os.geteuid() == 0:
            if subprocess.run(["mount", "-o", "remount,ro", str(folder)],
                              capture_output=True).returncode != 0:  # fmt: skip
                pytest.skip("root without a read-only remount: no read-only folder to test")
        else:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(0o555 if p.is_dir() else 0o444)
        return folder

    yield make
    for folder in mounts:
        subprocess.run(["umount", str(folder)], check=False)
    for p in tmp_path.rglob("*"):
        if not p.is_symlink():
            p.chmod(0o755)
