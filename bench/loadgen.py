"""Closed-loop HTTP load: `concurrency` tasks each POST the submit body back to back over keep-alive
connections (`--client httpx`: one httpx.AsyncClient; `--client raw`: bench/httpraw.py; uvloop), from `--start-at` (wall clock, so that several of these
processes start together) for `--warmup` + `--duration` seconds. Only requests that complete inside
the measured window count. Prints one JSON object: counts, latencies and this process's own CPU time
(to tell whether the load generator, not the server, is the bottleneck).

    python bench/loadgen.py --url http://127.0.0.1:PORT --token JWT --concurrency 32 --duration 10 [--client raw]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from common import SUBMIT_BODY  # noqa: E402
from httpraw import RawClient  # noqa: E402


class _Httpx:
    def __init__(self, args: argparse.Namespace, body: bytes) -> None:
        headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
        self.client = httpx.AsyncClient(limits=limits, timeout=30.0, headers=headers)
        self.base, self.url, self.body, self.n = args.url, args.url + "/api/v1/requests", body, args.concurrency

    async def open(self) -> None:  # open the connections before the clock starts
        await asyncio.gather(*(self.client.get(self.base + "/healthz") for _ in range(self.n)))

    async def submit(self) -> int:
        return (await self.client.post(self.url, content=self.body)).status_code

    async def close(self) -> None:
        await self.client.aclose()


class _Raw:
    def __init__(self, args: argparse.Namespace, body: bytes) -> None:
        host, _, port = args.url.removeprefix("http://").partition(":")
        self.client = RawClient(host, int(port), {"Authorization": f"Bearer {args.token}"}, args.concurrency)
        self.payload = self.client.build("POST", "/api/v1/requests", body)

    async def open(self) -> None:
        await self.client.open()

    async def submit(self) -> int:
        return (await self.client.send(self.payload))[0]

    async def close(self) -> None:
        await self.client.close()


async def main(args: argparse.Namespace) -> dict:
    body = json.dumps(SUBMIT_BODY).encode()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    client = _Raw(args, body) if args.client == "raw" else _Httpx(args, body)
    await client.open()
    try:
        delay = args.start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        measure_from = t0 + args.warmup
        end = measure_from + args.duration
        cpu0 = None

        async def one_client() -> None:
            nonlocal cpu0
            while True:
                start = time.perf_counter()
                if start >= end:
                    return
                try:
                    status = await client.submit()
                except (httpx.HTTPError, OSError) as exc:
                    status = type(exc).__name__
                done = time.perf_counter()
                if measure_from <= done <= end:  # completed inside the window (start may be in warm-up)
                    if status == 201:
                        latencies.append(done - start)
                    else:
                        errors[str(status)] += 1

        async def cpu_mark() -> None:
            nonlocal cpu0
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            cpu0 = time.process_time()

        marker = asyncio.ensure_future(cpu_mark())
        await asyncio.gather(*(one_client() for _ in range(args.concurrency)))
        await marker
        cpu = time.process_time() - (cpu0 or 0.0)
    finally:
        await client.close()
    return {"ok": len(latencies), "errors": dict(errors), "latencies_s": latencies, "window_s": args.duration,
            "cpu_s": cpu, "concurrency": args.concurrency, "client": args.client}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--out", help="write the result (JSON) here instead of to standard output")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = json.dumps(asyncio.run(main(args)))
    if args.out:  # (a file: whatever else reaches standard output cannot garble it)
        with open(args.out, "w") as out:
            out.write(result)
    else:
        print(result)
