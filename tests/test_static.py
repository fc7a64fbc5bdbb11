"""mypy sees the folders that setuptools maps into cifake_hub (builders/, cards/, training/)
under their real module names: a wrong type there, or across an import of one, fails the check.

The files under test are swapped in with mypy's --shadow-file, so the checkout is not touched.
CI runs mypy before the tests, so its cache is warm and this takes seconds there.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mypy_with(tmp_path: Path, shadows: dict[str, str]) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "mypy"]
    for source, appended in shadows.items():
        shadow = tmp_path / Path(source).name
        shadow.write_text((ROOT / source).read_text() + "\n" + appended + "\n")
        args += ["--shadow-file", source, str(shadow)]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_fails_on_a_wrong_type_in_a_mapped_folder(tmp_path):
    done = _mypy_with(
        tmp_path,
        {
            # inside training/: checked as cifake_hub.training.metrics
            "cifake_hub/training/metrics.py": 'WRONG_INSIDE: int = "not an int"',
            # across the import: the mapped module's types reach the importer (not Any)
            "cifake_hub/study.py": "WRONG_ACROSS: str = DataOptions().val_fraction",
        },
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cifake_hub/training/metrics.py" in done.stdout
    assert (
        'Incompatible types in assignment (expression has type "str", variable has type "int")'
        in (done.stdout)
    )
    assert "cifake_hub/study.py" in done.stdout
    assert 'expression has type "float", variable has type "str"' in done.stdout
