"""Serve the intake API in this process under cProfile for `--seconds`, then write the stats.

A tool to run by hand when bench/run.py reports a slow submit and its layer split is not enough:
py-spy is not available here. Settings come from OPSAT_* like the real API process; drive it with
bench/loadgen.py and read the stats with `python -m pstats`. (cProfile counts every resumption of a
coroutine as a call, and uvloop's C code shows up as time in asyncio's run: read tottime.)

    python bench/profile_api.py --port P --seconds 8 --out /tmp/api.prof
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile

import uvicorn


async def serve(port: int, seconds: float) -> None:
    from opsat.intake.service import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve())
    await asyncio.sleep(seconds)
    server.should_exit = True
    await task


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.install()
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(serve(args.port, args.seconds))
    finally:
        profiler.disable()
        profiler.dump_stats(args.out)
