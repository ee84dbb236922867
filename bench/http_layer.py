"""The HTTP layer of a submit, in one process, with no database: what FastAPI, the middleware, auth,
validation and encoding cost per request. The intake app is called as ASGI (no server, no sockets):

    healthz      GET /healthz (middleware + routing floor)
    submit_stub  POST /api/v1/requests with the command handler replaced by a stub returning a result
    command_stub POST /api/v1/requests/{id}/accept (a CommandRouter route) with the same stub
    invalid      POST /api/v1/requests with a body that fails validation (the 422 problem+json path)

Each is driven closed-loop at `--concurrency` for `--seconds`, reporting this process's CPU per op: the least
of `--windows` equal slices of that time (other programs on a shared machine inflate some slices, never deflate
them). `--cases` measures only those named.
`--compare REF` runs the same measurement, interleaved in the same run, against the code of git ref REF
(checked out into a temporary worktree and put first on the import path), and prints the ratios
(REF / this tree, above 1 = this tree is cheaper). Writes bench/results/http_layer.json.

    .venv/bin/python bench/http_layer.py --compare HEAD~1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
KEY = "bench-http-layer-signing-key-0123456789abcdef"
BODY = {"kind": "incident", "channel": "portal", "title": "Mail server unreachable from the branch office",
        "description": "Since this morning nobody at the branch can reach the mail server; webmail works. " * 3,
        "impact": 2, "urgency": 2, "service": "mail"}


async def measure(seconds: float, concurrency: int, windows: int = 1, only: list[str] | None = None
                  ) -> dict[str, Any]:
    os.environ.setdefault("OPSAT_AUTH_MODE", "dev")
    os.environ.setdefault("OPSAT_AUTH_DEV_KEY", KEY)
    from opsat.common.auth import mint_token
    from opsat.common.eventstore import AppendResult
    from opsat.intake.service import create_app
    from opsat.intake.settings import IntakeSettings

    settings = IntakeSettings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none", log_json=False,
                              provider_organisations=["ops"])
    token = mint_token(settings, sub="bench-user", org="ops", roles=["requester", "agent"], ttl_s=3600)
    app = create_app(settings)

    class StubCommands:
        """Answers every command at once: what is left is the HTTP layer."""

        async def execute(self, command: Any, actor: Any, meta: Any) -> AppendResult:
            return AppendResult(getattr(command, "request_id", "x"), 1, 1, (str(uuid.uuid4()),))

    def scope(method: str, path: str, body: bytes) -> dict[str, Any]:
        headers = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode()),
                   (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80)}

    async def call(sc: dict[str, Any], body: bytes) -> int:
        sent, status = False, 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(dict(sc), receive, send)
        return status

    submit = json.dumps(BODY).encode()
    accept = json.dumps({"team": "mail"}).encode()
    invalid = json.dumps({**BODY, "impact": 9}).encode()
    cases = {
        "healthz": (scope("GET", "/healthz", b""), b"", 200),
        "submit_stub": (scope("POST", "/api/v1/requests", submit), submit, 201),
        "command_stub": (scope("POST", "/api/v1/requests/r-1/accept", accept), accept, 200),
        "invalid": (scope("POST", "/api/v1/requests", invalid), invalid, 422),
    }
    if only:
        cases = {name: case for name, case in cases.items() if name in only}
    out: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        app.state.commands = StubCommands()
        for name, (sc, body, expected) in cases.items():
            status = await call(sc, body)
            if status != expected:
                raise RuntimeError(f"{name}: status {status}, expected {expected}")
            for _ in range(200):  # warm caches
                await call(sc, body)
            slices = []
            for _ in range(windows):
                n = 0
                end = time.perf_counter() + seconds / windows

                async def loop(sc: dict[str, Any] = sc, body: bytes = body) -> None:
                    nonlocal n
                    while time.perf_counter() < end:
                        await call(sc, body)
                        n += 1

                cpu0, t0 = time.process_time(), time.perf_counter()
                await asyncio.gather(*(loop() for _ in range(concurrency)))
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
                slices.append({"ops": n, "ops_per_s": round(n / wall, 1), "cpu_ms_per_op": round(cpu / n * 1000, 4)})
            out[name] = min(slices, key=lambda x: x["cpu_ms_per_op"])
    return out


def _child(seconds: float, concurrency: int, windows: int, only: list[str] | None) -> None:
    import uvloop

    uvloop.install()
    print(json.dumps(asyncio.run(measure(seconds, concurrency, windows, only))))


def _loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of this tree and --compare")
    parser.add_argument("--windows", type=int, default=1, help="slices of --seconds; the least CPU per op counts")
    parser.add_argument("--cases", help="comma-separated cases to measure (default: all)")
    parser.add_argument("--compare", help="git ref whose code is measured beside this tree's")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.seconds, args.concurrency, args.windows, args.cases.split(",") if args.cases else None)
    from common import code_trees, in_turn, run_child  # bench/ is this script's folder, first on the import path

    load_before = _loadavg()
    with code_trees(args.compare) as trees:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for round_ in range(args.rounds):  # interleaved, so both see the same load on this shared machine
            for name, paths in in_turn(trees, round_):
                runs[name].append(run_child(__file__, paths, ["--seconds", str(args.seconds), "--concurrency",
                                                              str(args.concurrency), "--windows", str(args.windows),
                                                              *(["--cases", args.cases] if args.cases else [])]))
    # per case, the best (least CPU) of the rounds: the one least disturbed by other programs
    best = {name: {case: min((r[case] for r in rs), key=lambda x: x["cpu_ms_per_op"]) for case in rs[0]}
            for name, rs in runs.items()}
    result: dict[str, Any] = {"name": "http_layer", "unit": "ms CPU per request (in-process ASGI, no database)",
                              "concurrency": args.concurrency, "seconds": args.seconds, "rounds": args.rounds,
                              "windows": args.windows,
                              "loadavg_before": load_before, "loadavg_after": _loadavg(), "best": best, "runs": runs,
                              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    cases = list(best["this tree"])
    print(f"{'case':<14}" + "".join(f"{name:>22}" for name in trees) + ("   ratio (ref / this)" if args.compare else ""))
    for case in cases:
        line = f"{case:<14}" + "".join(f"{best[n][case]['cpu_ms_per_op']:>16.4f} ms/op" for n in trees)
        if args.compare:
            ratio = best[args.compare][case]["cpu_ms_per_op"] / best["this tree"][case]["cpu_ms_per_op"]
            result.setdefault("ratios", {})[case] = round(ratio, 3)
            line += f"   {ratio:.2f}x"
        print(line)
    print(f"load average before {load_before}, after {result['loadavg_after']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http_layer.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
