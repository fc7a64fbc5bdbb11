from __future__ import annotations

import subprocess
import sys


def test_help_imports_no_heavy_library():
    code = (
        "import sys; from cifake_hub.cli.main import build_parser;"
        "build_parser().format_help();"
        "heavy = {'datasets', 'torch', 'tensorflow', 'diffusers', 'keras', 'pyarrow'};"
        "heavy &= set(sys.modules);"
        "print(sorted(heavy))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_debug_variable_shows_traceback(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "cifake_hub.cli.main",
        "import-kaggle",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
    ]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    debug = subprocess.run(
        cmd, capture_output=True, text=True, env={**__import__("os").environ, "CIFAKE_DEBUG": "1"}
    )
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "SourceError" in debug.stderr


def test_only_the_given_command_imports_its_stage():
    code = (
        "import sys; from cifake_hub.cli.main import build_parser;"
        "build_parser().format_help();"
        "stages = {'numpy', 'PIL', 'cifake_hub.builders.units', 'cifake_hub.evaluate.run'};"
        "print(sorted(stages & set(sys.modules)));"
        "build_parser('build').parse_args(['build', '--out', 'x']);"
        "print('cifake_hub.builders.units' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["[]", "True"]
