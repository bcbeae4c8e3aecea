"""python/rustdocker/_core.pyi, the documentation of the native module, is true to the module:
mypy's stubtest compares every name, class member and signature in the stub with the built
extension."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, skip_or_fail

STUB = ROOT / "python" / "rustdocker" / "_core.pyi"


def test_core_stub_matches_the_built_module(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        skip_or_fail("mypy is not installed (pip install mypy, or the `lint` extra)")
    # The source stub alone, as a stub-only package on MYPYPATH: stubtest then checks it (not
    # the copy installed with the wheel) against the installed module, and the rest of the
    # package is not type-checked here (`make lint` runs mypy on it).
    stubs = tmp_path / "stubs" / "rustdocker"
    stubs.mkdir(parents=True)
    shutil.copy(STUB, stubs / "_core.pyi")
    (stubs / "__init__.pyi").write_text("")
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "rustdocker._core"],
        cwd=tmp_path,  # no project mypy configuration
        env={**os.environ, "MYPYPATH": str(tmp_path / "stubs")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = (run.stdout + run.stderr).replace(str(stubs / "_core.pyi"), str(STUB))
    # One line per disagreement, e.g. "rustdocker._core.set_logger is not present in stub"
    # (the module has it, the .pyi does not) or "... is not present at runtime" (the reverse,
    # or the build is older than the .pyi: rebuild with `make dev`).
    problems = re.findall(r"^error: (.*)$", output, flags=re.MULTILINE)
    if run.returncode != 0 or problems:
        pytest.fail(
            f"{STUB.relative_to(ROOT)} disagrees with the built rustdocker._core "
            f"({len(problems)} problems):\n  " + "\n  ".join(problems) + f"\n\n{output}",
            pytrace=False,
        )
