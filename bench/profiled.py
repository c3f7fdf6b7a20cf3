"""`python -m bench.profiled MODULE`: run a service module under cProfile.

The bench's fallback when py-spy cannot attach. The hook lives here, in bench code only:
with BENCH_CPROFILE_OUT set, the module's `__main__` runs inside a profiler and the stats
are written there when it returns (the services return after SIGTERM's graceful stop).
"""

from __future__ import annotations

import cProfile
import os
import runpy
import sys


def main() -> None:
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    out = os.environ.get("BENCH_CPROFILE_OUT")
    if not out:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
