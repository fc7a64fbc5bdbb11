"""``cifake import-kaggle SRC --out DIR``: the Kaggle CIFAKE download as a dataset folder."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table


def register(sub: Any) -> None:
    p = sub.add_parser(
        "import-kaggle",
        help="import the Kaggle CIFAKE zip or folder into a Parquet dataset folder",
        description=(
            "Import the Kaggle CIFAKE download (zip or extracted folder with train/ and/or "
            "test/ holding REAL/ and FAKE/) keeping every file's original bytes. Exact "
            "duplicates are reported; unreadable, non-RGB or non-32x32 files are listed and "
            "skipped. The report goes to DIR/import_report.json."
        ),
    )
    p.add_argument("src", help="the Kaggle CIFAKE zip file or extracted folder")
    p.add_argument("--out", required=True, help="output dataset folder (e.g. ./cifake)")
    p.add_argument(
        "--dedupe", action="store_true", help="drop the later copy of each exact duplicate"
    )
    p.add_argument("--strict", action="store_true", help="stop at the first invalid image")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--workers", type=int, default=2, help="processes that read and check images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cifake_hub.kaggle import ImportConfig, import_kaggle, scan
    from cifake_hub.progress import console, progress_bar

    config = ImportConfig(
        src=args.src, out=args.out, dedupe=args.dedupe, strict=args.strict, workers=args.workers
    )
    layout = scan(config.src)
    with progress_bar("importing", total=len(layout.entries)) as bar:
        result = import_kaggle(
            config,
            overwrite=args.overwrite,
            layout=layout,
            progress=lambda n: bar.advance(0, n),  # type: ignore[arg-type]
        )
    report = result.report
    table = Table(title=f"Imported {report['rows_written']:,} of {report['input_files']:,} files")
    for col in ("split", "rows", "shards", "Parquet MB"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for split, s in result.stats.items():
        size = sum((result.report_path.parent / "data" / f).stat().st_size for f in s.shards)
        table.add_row(split, f"{s.num_examples:,}", str(len(s.shards)), f"{size / 1e6:.1f}")
    console.print(table)
    dup = report["duplicates"]
    console.print(
        f"duplicates: {dup['extra_copies']} extra copies in {dup['groups']} groups "
        f"({dup['groups_across_splits']} across splits)"
        + (
            f", {len(report['dropped'])} dropped"
            if args.dedupe
            else ", kept (use --dedupe to drop)"
        )
    )
    for key, count in dup["extra_copies_per_split_label_class"].items():
        console.print(f"  {key}: {count}")
    console.print(
        f"invalid images skipped: {len(report['invalid'])}; other files ignored: "
        f"{len(report['ignored'])}"
    )
    for item in report["invalid"][:10]:
        console.print(f"  {item['file']}: {item['problem']}")
    console.print(f"report: {result.report_path}")
    print(result.report_path.parent)
    return 0
