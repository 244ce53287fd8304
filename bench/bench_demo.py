"""The whole demo with an empty cache (target <= 600 s on 2 cores), then again with the cached model."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _demo(cache: Path, out: Path) -> float:
    env = {**os.environ, "SAFETAX_CACHE": str(cache)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "safetax", "demo", "--out", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        first = _demo(Path(tmp) / "cache", Path(tmp) / "run1")
        second = _demo(Path(tmp) / "cache", Path(tmp) / "run2")
    print(f"first run (builds the demo model): {first:.0f}s (target <= 600s)")
    print(f"second run (cached model): {second:.0f}s   first/second: {first / second:.2f}x")
    print("PASS" if first <= 600 and second < first else "FAIL")


if __name__ == "__main__":
    main()
