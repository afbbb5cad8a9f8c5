"""Write constraints.txt (the lock) from the packages installed in a virtual environment.

Usage: python .ci/write_lock.py VENV_PYTHON OUTPUT TORCH_PIN

Every installed distribution is pinned to its version, except the project itself
(installed editable) and torch, which is replaced by TORCH_PIN (the local CPU
build ``2.13.0+cpu`` is written as ``torch==2.13.0`` so the lock also resolves
where only the plain release exists).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEADER = """\
# The lock: every package version the test suite passes with, for development and CI
# (`make test` and `make demo` install with `-c constraints.txt`). The package's own
# dependencies in pyproject.toml stay ranges. Do not edit by hand: `make lock` re-resolves
# everything with only the torch pin, writes this file and runs the suite; `make test-latest`
# runs the suite against the newest releases. torch is pinned because an unpinned torch
# pulls several GB of CUDA packages (2.13.0 is the local CPU wheel on the project's machines).
"""

PROJECT = "napari-microstructure"


def _name(line: str) -> str:
    return line.split("==", 1)[0].strip().lower().replace("_", "-")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    python, output, torch_pin = argv
    frozen = subprocess.run(
        [python, "-m", "pip", "--disable-pip-version-check", "freeze", "--exclude-editable"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    pins = []
    for line in frozen:
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("-e"):
            continue
        if "==" not in line:
            print(f"error: cannot lock {line!r} (not a released version); install it from an index",
                  file=sys.stderr)
            return 1
        name = _name(line)
        if name == PROJECT:
            continue
        pins.append(torch_pin if name == "torch" else line)
    if not any(_name(p) == "torch" for p in pins):
        pins.append(torch_pin)
    pins.sort(key=_name)
    Path(output).write_text(HEADER + "\n".join(pins) + "\n")
    print(f"wrote {output}: {len(pins)} pinned packages")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
