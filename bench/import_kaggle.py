"""Import speed: `cifake import-kaggle` vs `load_dataset("imagefolder")` on the same files.

    python bench/import_kaggle.py [--zip ../shared/data/cifake-train.zip] [--limit N]

Both read the same extracted folder, each in a fresh process with a fresh cache. Ours
includes its full validation (decode of every image) and the duplicate check. Prints rows/s
of each, the ratio, and the peak RSS (all processes) of each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _util import run_measured  # noqa: E402

IMAGEFOLDER = """
import sys, datasets
ds = datasets.load_dataset("imagefolder", data_dir=sys.argv[1], cache_dir=sys.argv[2])
print(sum(d.num_rows for d in ds.values()))
"""


def extract(zip_path: Path, dest: Path, limit: int | None) -> int:
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(i.filename for i in z.infolist() if not i.is_dir())
        if limit:
            names = names[:: max(1, len(names) // limit)][:limit]
        for name in names:
            z.extract(name, dest)
    return len(names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zip", type=Path, default=Path("../shared/data/cifake-train.zip"))
    ap.add_argument("--limit", type=int, default=None, help="use an even sample of N files")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        src = work / "src"
        n = extract(args.zip, src, args.limit)
        env = {**os.environ, "HF_DATASETS_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1"}
        cifake = str(Path(sys.executable).with_name("cifake"))
        ours_s, ours_rss, _ = run_measured(
            [cifake, "import-kaggle", str(src), "--out", str(work / "ours")], env
        )
        ref_s, ref_rss, out = run_measured(
            [sys.executable, "-c", IMAGEFOLDER, str(src), str(work / "cache")], env
        )
        assert int(out.split()[-1]) == n, out
        print(f"files: {n:,} (from {args.zip})")
        print(
            f"cifake import-kaggle : {n / ours_s:9,.0f} rows/s ({ours_s:6.1f} s), "
            f"peak RSS {ours_rss / 2**20:,.0f} MiB"
        )
        print(
            f"imagefolder          : {n / ref_s:9,.0f} rows/s ({ref_s:6.1f} s), "
            f"peak RSS {ref_rss / 2**20:,.0f} MiB"
        )
        print(f"ratio (ours / imagefolder): {ref_s / ours_s:.1f}x  (target >= 10x; RSS < 1 GiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
