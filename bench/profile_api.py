"""Serve the intake API in this process under cProfile for `--seconds`, then write the stats.

Used by `run.py --profile` (and by hand) to find where a submit's CPU time goes; py-spy is not
available here. Settings come from OPSAT_* like the real API process.

    python bench/profile_api.py --port P --seconds 8 --out /tmp/api.prof
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile

import uvicorn


async def serve(port: int, seconds: float) -> None:
    from opsat.intake.main import create_app

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
