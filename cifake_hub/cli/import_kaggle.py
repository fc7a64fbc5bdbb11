"""``cifake import-kaggle SRC --out DIR``: import the Kaggle CIFAKE zip or folder into a
Parquet dataset folder.

Import the Kaggle CIFAKE download (zip or extracted folder with train/ and/or test/ holding
REAL/ and FAKE/) keeping every file's original bytes. Exact duplicates are reported;
unreadable, non-RGB or non-32x32 files are listed and skipped. The import report goes into
the dataset folder.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from cifake_hub.cli.options import (
    add_command,
    config_from_args,
)

NAME = "import-kaggle"


def register(sub: Any) -> None:
    from cifake_hub.builders.kaggle import ImportConfig

    add_command(sub, NAME, __doc__, run, ImportConfig, overwrite=True)


def run(args: argparse.Namespace) -> int:
    from cifake_hub.builders.kaggle import ImportConfig, import_kaggle, scan
    from cifake_hub.progress import console, progress_bar

    config = config_from_args(ImportConfig, args)
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
        table.add_row(split, f"{s.num_examples:,}", str(len(s.shards)), f"{s.file_bytes / 1e6:.1f}")
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
