"""Publish speed: `cifake-publish` vs a bare `DatasetDict.push_to_hub` of the same data.

    python bench/publish.py [--zip ../shared/data/cifake-train.zip] [--limit N]

The Kaggle train zip is imported once (`cifake import-kaggle`, not timed). Both sides then
push that folder to the tests' Hub-protocol server (tests/hub_server.py, in its own process)
from a fresh process with an empty cache: the baseline loads the folder with `load_dataset`
and calls `push_to_hub`; ours is the whole `cifake-publish` (token check, push_to_hub, card
render and commit). Its verification step (a fresh process loading everything back) is
timed by cifake-publish itself, excluded from the ratio and printed apart.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_bench_token"
SERVER = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from tests.hub_server import HubServer
with HubServer({TOKEN!r}) as server:
    print(server.endpoint, flush=True)
    while True:
        time.sleep(3600)
"""
BARE = """
import sys, datasets
ds = datasets.load_dataset(sys.argv[1])
ds.push_to_hub(sys.argv[2])
print(sum(len(d) for d in ds.values()))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zip", type=Path, default=Path("../shared/data/cifake-train.zip"))
    ap.add_argument("--limit", type=int, default=None, help="import only the first N files")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        bindir = Path(sys.executable).parent
        folder = work / "cifake"
        src: Path = args.zip
        if args.limit:
            src = work / "src"
            with zipfile.ZipFile(args.zip) as z:
                names = sorted(n for n in z.namelist() if not n.endswith("/"))[: args.limit]
                for name in names:
                    z.extract(name, src)
        subprocess.run(
            [bindir / "cifake", "import-kaggle", str(src), "--out", str(folder)],
            check=True,
            capture_output=True,
        )
        assert server.stdout is not None
        endpoint = server.stdout.readline().strip()

        def env(name: str) -> dict[str, str]:
            home = work / f"hf-{name}"
            return {
                **os.environ,
                "HF_ENDPOINT": endpoint,
                "HF_TOKEN": TOKEN,
                "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_OFFLINE": "0",
                "HF_HOME": str(home),
                "HF_DATASETS_CACHE": str(home / "datasets"),
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            }

        bare_s, bare_rss, out = run_measured(
            [sys.executable, "-c", BARE, str(folder), "bench/bare"], env("bare")
        )
        rows = int(out.split()[-1])
        ours_s, ours_rss, out = run_measured(
            [
                str(bindir / "cifake-publish"),
                "--dataset",
                str(folder),
                "--dataset-repo",
                "bench/ours",
            ],
            env("ours"),
        )
        verify_s = float(re.search(r"verification took ([\d.]+) s", out).group(1))  # type: ignore[union-attr]
        publish_s = ours_s - verify_s
        print(f"rows: {rows:,} (from {args.zip})")
        print(f"bare push_to_hub : {bare_s:6.1f} s, peak RSS {bare_rss / 2**20:6.0f} MiB")
        print(
            f"cifake-publish   : {publish_s:6.1f} s without verification "
            f"({ours_s:.1f} s in all), peak RSS {ours_rss / 2**20:6.0f} MiB"
        )
        print(f"verification     : {verify_s:6.1f} s (fresh process, empty cache)")
        print(f"ratio            : {publish_s / bare_s:.3f} (target <= 1.15)")
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
