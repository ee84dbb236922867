"""Command-to-read-model latency (bench/read_model_latency.py) beside another git ref's code, in one run.

Each run is a child process with that tree's code first on the import path (API and worker inherit it):
a fresh database, its own topics, `--rate` submits/s for `--seconds`, the same open-loop measurement as
`make bench`. Trees alternate `--rounds` times. Prints p50/p99 from the HTTP response, the relay and
projection split and the cores each process kept busy; writes bench/results/latency_compare.json.

    .venv/bin/python bench/latency_compare.py --compare HEAD~1 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


async def child(rate: float, seconds: float, worker_env: dict[str, str]) -> dict[str, Any]:
    import read_model_latency
    from common import Bench, infra_up

    bench = Bench(infra_up())
    try:
        result, _ = await read_model_latency.run(bench, rate=rate, seconds=seconds, worker_env=worker_env)
        d = result.details
        return {"p50_ms": d["latency_from_http_response"]["p50_ms"], "p99_ms": result.value,
                "relay": d["split_response_to_kafka (relay)"], "projection": d["split_kafka_to_read_model (projection)"],
                "achieved_rate_per_s": d["achieved_rate_per_s"], "missing": d["missing_in_read_model_after_wait"],
                "cores_busy": d["cpu"]["cores_busy"], "rss": d["rss"],
                "kafka_jit_cores": d["cpu"].get("kafka_jit_compiler_cores (part of kafka's)")}
    finally:
        await bench.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--compare", help="git ref whose API and worker run beside this tree's")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the worker (e.g. OPSAT_RELAY_LINGER_S=0.01); repeatable")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.rate, args.seconds, dict(kv.split("=", 1) for kv in args.worker_env)))))
        return
    from common import code_trees, in_turn, run_child

    load_before = os.getloadavg()
    with code_trees(args.compare) as trees:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            for name, paths in in_turn(trees, round_):
                out = run_child(__file__, paths, ["--rate", str(args.rate), "--seconds", str(args.seconds),
                                                  *(f"--worker-env={kv}" for kv in args.worker_env)])
                runs[name].append(out)
                busy = ", ".join(f"{k.split(' ')[0]} {v}" for k, v in out["cores_busy"].items())
                print(f"  {name:<12} p50 {out['p50_ms']:>7} ms  p99 {out['p99_ms']:>7} ms  relay p50/p99 "
                      f"{out['relay']['p50_ms']}/{out['relay']['p99_ms']}  projection p50/p99 "
                      f"{out['projection']['p50_ms']}/{out['projection']['p99_ms']}  {out['achieved_rate_per_s']}/s"
                      f"  cores: {busy} (kafka's JIT compiler {out.get('kafka_jit_cores')})", flush=True)
    result = {"name": "latency_compare", "rate": args.rate, "seconds": args.seconds, "runs": runs,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "latency_compare.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
