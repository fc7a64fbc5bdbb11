"""cifake-publish against the Hub-protocol test server, with the real hub and datasets clients.

Every publish runs as a subprocess (the real console entry point), so the clients read the
test server's endpoint at import time exactly as they would for a user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.conftest import HUB_TOKEN, hub_client_env
from tests.hub_server import Fault, HubServer

TOKEN = HUB_TOKEN
DATA_REPO = "tester/cifake"
MODEL_REPO = "tester/cifake-cnn"


@pytest.fixture(scope="module")
def published_run(small_cifake, tmp_path_factory):
    """A 1-epoch search run on the small dataset, explained with Grad-CAM."""
    from cifake_hub.explain.run import ExplainConfig, explain_run
    from cifake_hub.training.search import SearchConfig, run_search

    run_dir = tmp_path_factory.mktemp("publish") / "run"
    config = SearchConfig(topology="conv=16x1,dense=32x1", epochs=1, batch_size=32, patience=0)
    run_search(small_cifake, run_dir, config)
    explain_run(run_dir, ExplainConfig(dataset=str(small_cifake), n=10))
    return run_dir


def hub_env(tmp_path: Path, hub: HubServer, token: str | None = TOKEN) -> dict[str, str]:
    return hub_client_env(hub, tmp_path / "hf-home", token)


def publish(tmp_path, hub, dataset, run=None, *extra, token=TOKEN):
    args = ["--dataset", str(dataset), "--dataset-repo", DATA_REPO, "--endpoint", hub.endpoint]
    if run is not None:
        args += ["--run", str(run), "--model-repo", MODEL_REPO]
    return subprocess.run(
        [sys.executable, "-m", "cifake_hub.cli.publish", *args, *extra],
        env=hub_env(tmp_path, hub, token),
        capture_output=True,
        text=True,
        timeout=600,
    )


def hub_files(hub: HubServer, kind: str, repo: str, revision: str = "main") -> dict[str, bytes]:
    return {p: c for p, c in hub.state.files(kind, repo, revision).items() if p != ".gitattributes"}


def test_publish_end_to_end(tmp_path, hub, small_cifake, published_run):
    done = publish(tmp_path, hub, small_cifake, published_run)
    assert done.returncode == 0, done.stderr
    assert DATA_REPO in done.stdout and MODEL_REPO in done.stdout
    assert "104 images equal" in done.stdout  # the verification summary
    data = hub_files(hub, "dataset", DATA_REPO)
    model = hub_files(hub, "model", MODEL_REPO)
    assert sorted(p for p in data if p.startswith("data/")) == [
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00001.parquet",
    ]
    for name in ("config.json", "metadata.json", "model.weights.h5", "model.keras", "README.md"):
        assert name in model
    assert "gradcam/figure6.png" in model and "tables/tables.md" in model
    # One commit for the model; data, then card for the dataset.
    assert len(hub.state.main_history("model", MODEL_REPO)) == 2
    assert len(hub.state.main_history("dataset", DATA_REPO)) == 3

    # Both READMEs are our cards, with the YAML the Hub accepted.
    data_card = data["README.md"].decode()
    data_meta = yaml.safe_load(data_card.split("---")[1])
    assert {"dataset_info", "configs", "license", "task_categories"} <= data_meta.keys()
    assert data_meta["dataset_info"]["splits"] == [
        {
            "name": "train",
            "num_bytes": data_meta["dataset_info"]["splits"][0]["num_bytes"],
            "num_examples": 200,
        },
        {
            "name": "test",
            "num_bytes": data_meta["dataset_info"]["splits"][1]["num_bytes"],
            "num_examples": 40,
        },
    ]
    assert f"{hub.endpoint}/{MODEL_REPO}" in data_card
    model_card = model["README.md"].decode()
    model_meta = yaml.safe_load(model_card.split("---")[1])
    test = json.loads((published_run / "test_results.json").read_text())
    metrics = {m["type"]: m["value"] for m in model_meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics["accuracy"] == pytest.approx(test["final"]["metrics"]["accuracy"], abs=1e-4)
    assert f"{hub.endpoint}/datasets/{DATA_REPO}" in model_card
    assert hub.state.log.count("POST /api/validate-yaml") >= 2

    # A fresh process loads both back: every row equal, the same predictions.
    check = textwrap.dedent(
        f"""
        import json, datasets, numpy as np
        from huggingface_hub import snapshot_download
        from cifake_hub.training.backend import import_keras
        keras = import_keras()
        hub = datasets.load_dataset("{DATA_REPO}")
        local = datasets.load_dataset("{small_cifake}")
        raw = datasets.Image(decode=False)
        rows = lambda d, s: d[s].cast_column("image", raw).to_list()
        same = sorted(hub) == sorted(local) and hub["train"].features == local["train"].features
        same = same and all(rows(hub, s) == rows(local, s) for s in local)
        x = np.stack([np.asarray(im) for im in local["test"]["image"]])
        snap = snapshot_download("{MODEL_REPO}")
        a = keras.saving.load_model("hf://{MODEL_REPO}").predict(x, verbose=0)
        b = keras.saving.load_model(snap + "/model.keras").predict(x, verbose=0)
        c = keras.saving.load_model("{published_run}/model.keras").predict(x, verbose=0)
        print(json.dumps([same, float(abs(a - c).max()), float(abs(b - c).max())]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", check],
        env=hub_env(tmp_path / "fresh", hub),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    same, diff_layout, diff_keras = json.loads(out.stdout.strip().splitlines()[-1])
    assert same and diff_layout == 0.0 and diff_keras == 0.0

    # Publishing the same inputs again makes no commit and no second set of shards.
    again = publish(tmp_path, hub, small_cifake, published_run, "--no-verify")
    assert again.returncode == 0, again.stderr
    assert len(hub.state.main_history("dataset", DATA_REPO)) == 3
    assert len(hub.state.main_history("model", MODEL_REPO)) == 2
    assert hub_files(hub, "dataset", DATA_REPO) == data

    # --dry-run writes exactly these trees and talks to no server.
    requests = len(hub.state.log)
    dry = publish(tmp_path, hub, small_cifake, published_run, "--dry-run", str(tmp_path / "dry"))
    assert dry.returncode == 0, dry.stderr
    assert len(hub.state.log) == requests
    for kind, repo, files in (("dataset", DATA_REPO, data), ("model", MODEL_REPO, model)):
        root = tmp_path / "dry" / kind
        staged = {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }
        assert staged == files, f"{repo}: dry run differs from what was pushed"

    outputs = done.stdout + done.stderr + again.stdout + again.stderr + dry.stdout + dry.stderr
    assert TOKEN not in outputs
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_transient_faults_are_retried(tmp_path, hub, small_cifake, published_run):
    faults = [
        Fault(r"^PUT /lfs-upload/", nth=2, status=500),  # a shard upload, mid-way
        Fault(r"^POST /api/datasets/.*/preupload/", status=429, headers={"Retry-After": "1"}),
        Fault(r"^POST /api/datasets/.*/commit/", status=500),  # the dataset commit itself
        Fault(r"^POST /api/models/.*/commit/", drop=True),  # connection lost on the model commit
    ]
    hub.state.faults.extend(faults)
    done = publish(tmp_path, hub, small_cifake, published_run, "--no-verify")
    assert done.returncode == 0, done.stderr
    assert all(f.fired == 1 for f in faults)
    assert "retry 1/3" in done.stderr
    assert len(hub.state.main_history("dataset", DATA_REPO)) == 3
    assert "model.keras" in hub_files(hub, "model", MODEL_REPO)


def _no_partial_commit(hub: HubServer, kind: str, repo: str, expected: set[str]) -> None:
    for commit in hub.state.main_history(kind, repo):
        files = set(commit.files) - {".gitattributes"}
        assert not files or expected <= files, f"partial commit {commit.message}: {sorted(files)}"


@pytest.mark.parametrize("kind", ["dataset", "model"])
def test_exhausted_retries_end_in_one_line(tmp_path, hub, small_cifake, published_run, kind):
    hub.state.faults.append(Fault(rf"^POST /api/{kind}s/.*/commit/", status=503, times=100))
    done = publish(tmp_path, hub, small_cifake, published_run, "--retries", "1", "--no-verify")
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "HTTP 503" in lines[0] and "Traceback" not in done.stderr
    if kind == "dataset":
        assert "pushed: nothing; not pushed: dataset data, dataset card, model" in lines[0]
        _no_partial_commit(
            hub, "dataset", DATA_REPO, {"README.md", "data/train-00000-of-00001.parquet"}
        )
    else:
        assert "pushed: dataset data, dataset card; not pushed: model" in lines[0]
        _no_partial_commit(hub, "model", MODEL_REPO, {"model.keras", "README.md", "config.json"})
    assert TOKEN not in done.stdout + done.stderr


def test_wrong_or_missing_token(tmp_path, hub, small_cifake):
    wrong = publish(tmp_path, hub, small_cifake, None, token="hf_wrong_token_0000")
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines()[-1].startswith("error:")
    assert "refused the token" in wrong.stderr and "HTTP 401" in wrong.stderr
    assert "hf_wrong_token_0000" not in wrong.stdout + wrong.stderr
    missing = publish(tmp_path, hub, small_cifake, None, token=None)
    assert missing.returncode == 1 and "no Hub token" in missing.stderr
    assert hub.state.repos == {}


def test_unreachable_endpoint(tmp_path, small_cifake):
    with HubServer(TOKEN) as closed:
        endpoint = closed.endpoint
    done = subprocess.run(
        [sys.executable, "-m", "cifake_hub.cli.publish", "--dataset", str(small_cifake),
         "--dataset-repo", DATA_REPO, "--endpoint", endpoint, "--retries", "0"],
        env={**os.environ, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"error: cannot reach {endpoint}" in done.stderr and "Traceback" not in done.stderr


def test_create_pr_and_revision_leave_main_alone(tmp_path, hub, small_cifake):
    first = publish(tmp_path, hub, small_cifake, None, "--create-pr", "--private", "--no-verify")
    assert first.returncode == 0, first.stderr
    assert hub.state.repos[("dataset", DATA_REPO)].private
    assert "refs/pr/1" in first.stdout
    assert hub_files(hub, "dataset", DATA_REPO) == {}
    pr = hub_files(hub, "dataset", DATA_REPO, "refs/pr/1")
    assert "README.md" in pr and "data/train-00000-of-00001.parquet" in pr
    branch = publish(tmp_path, hub, small_cifake, None, "--revision", "v1")
    assert branch.returncode == 0, branch.stderr
    assert hub_files(hub, "dataset", DATA_REPO) == {}
    assert hub_files(hub, "dataset", DATA_REPO, "v1").keys() == pr.keys()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset-repo", "no-namespace"], "dataset-repo must be NAMESPACE/NAME"),
        (["--dataset-repo", "a/b", "--model-repo", "a/m"], "give --run and --model-repo together"),
        (["--dataset-repo", "a/b", "--endpoint", "ftp://x"], "endpoint must be an http(s) URL"),
    ],
)
def test_bad_arguments_are_one_line(capsys, small_cifake, args, message):
    from cifake_hub.cli.publish import main

    assert main(["--dataset", str(small_cifake), *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
