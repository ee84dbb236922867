"""opsat benchmarks: `make bench` (or `.venv/bin/python bench/run.py [--quick]`).

Measures, on this machine, against the local Kafka + PostgreSQL (deploy/local/infra.sh, started if
needed), with throwaway databases `opsat_bench_<id>_*`, topics `bench<id>.*` and free ports:

  1 submit_throughput_{1,2}worker   POST /api/v1/requests over HTTP, uvicorn with 1 and 2 workers
  2 command_to_read_model_latency   submit -> row in read_model.requests, 200 and 500 submits/s, API + worker
  3 relay_catchup_batch{N}          OutboxRelay.drain over a 100k-event backlog, per batch size
  4 projection_replay               projections.rebuild over the 100k-event topic
  5 peak_rss_{api,worker}           VmHWM of the service processes during the runs above
  6 limit_*                         raw asyncpg inserts, Kafka ProducerPerformance, aiokafka consumer
  7 appraisal_scorecards_500x90     a quarter's scorecards from 135,000 resolved requests' facts (≤ 5 s)
  8 risk_signal_evaluation          the risk signal driver over a replay of 100k upstream events (≥ 10,000/s),
                                    batched and (capped) per event, side by side
  9 sla_deadline_to_event_lag_p99   SLA timers fired by the deadline scheduler, 100,000 open clocks (≤ 1 s)
    sla_clock_updates_per_s         intake events replayed through the SLA clock driver (≥ 10,000/s)

Prints a table, writes bench/results/<name>.json per result and bench/results/summary.json (with the
ratios to the limits and the "where does the time go" splits). Everything it started is stopped and
dropped at the end, also on Ctrl-C. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import RESULTS, Bench, Result, infra_up, machine, now_iso, r  # noqa: E402


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    out = []
    for n, row in enumerate(cells):
        last = len(row) - 1
        out.append(" | ".join(str(c).ljust(w) if i == 0 or (i == last and header[i] == "notes") else str(c).rjust(w)
                              for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            out.append(line)
    return "\n".join(out)


def step(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    quick = args.quick
    for old in RESULTS.glob("*.json"):
        old.unlink()
    infra = infra_up()
    bench = Bench(infra)
    step(f"bench run {bench.id}: PostgreSQL {infra.pg_base}, Kafka {infra.bootstrap}, logs {bench.logs}")
    results: list[Result] = []
    diagnosis: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    failures: dict[str, str] = {}

    async def guarded(name: str, coro: Any) -> Any:
        try:
            return await coro
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # one benchmark failing must not lose the others
            import traceback

            failures[name] = f"{type(exc).__name__}: {exc}"
            step(f"!! {name} failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            return None

    try:
        import limits
        import read_model_latency
        import relay_replay
        import submit_split
        import submit_throughput

        # ---- 6a. PostgreSQL limits ----------------------------------------------------------------
        step("limits: raw asyncpg inserts into the events table shape")
        out = await guarded("limits_postgres", limits.postgres(
            bench, relay_replay._sample_event_json(), seconds=2 if quick else 4, whatif_seconds=1.5 if quick else 3,
            many_rows=20_000 if quick else 50_000))
        if out:
            results += out[0]
            extra.update(out[1])

        # ---- 6b. Kafka ProducerPerformance ----------------------------------------------------------
        step("limits: Kafka ProducerPerformance")
        perf_topic = f"{bench.namespace}.perf.events"
        await bench.create_topics({perf_topic: 6})
        out = await guarded("limits_kafka_producer", asyncio.to_thread(
            limits.producer_performance, bench, perf_topic, 50_000 if quick else 200_000))
        if out:
            results.append(out)

        # ---- 1. submit throughput ---------------------------------------------------------------------
        step("1. submit throughput over HTTP (1 and 2 uvicorn workers)")
        out = await guarded("submit_throughput", submit_throughput.run(
            bench, concurrency=args.concurrency, seconds=4 if quick else 10, httpx_seconds=3 if quick else 6,
            whatif_seconds=0 if args.no_diagnose else 3 if quick else 6))
        if out:
            results += out[0]
            diagnosis.update(out[1])
            if not all(x.met for x in out[0]) and not args.no_diagnose:
                step("   target missed: splitting a submit's time layer by layer (in-process)")
                db = await bench.create_database("split")
                split = await guarded("submit_split", submit_split.run(
                    infra.sqlalchemy_url(db), infra.dsn(db), common.token(), concurrency=32,
                    seconds=2 if quick else 3))
                if split:
                    diagnosis["submit_layers"] = split

        # ---- 2. command -> read model latency ---------------------------------------------------------
        step("2. command-to-read-model latency at 200 submits/s (API + worker processes)")
        out = await guarded("latency", read_model_latency.run(bench, seconds=5 if quick else 10))
        if out:
            results.append(out[0])
        step("   and at 500 submits/s")
        out = await guarded("latency_500", read_model_latency.run(bench, rate=500.0, seconds=5 if quick else 10))
        if out:
            results.append(out[0])

        # ---- 3. relay catch-up --------------------------------------------------------------------------
        step("3. relay catch-up on a 100k-event backlog (batch sizes 2000, 10000)")
        events = 20_000 if quick else 100_000
        out = await guarded("relay", relay_replay.relay_bench(bench, (2_000, 10_000), events=events))
        relay_info = None
        if out:
            results += out[0]
            relay_info = out[1]

        # ---- 4. projection replay -------------------------------------------------------------------
        if relay_info:
            step("   limit: aiokafka consumer on the same topic")
            consumer = await guarded("consumer_limit", relay_replay.consumer_limit(
                infra.bootstrap, relay_info["topic"], events))
            consumer_split = None
            if consumer:
                results.append(consumer[0])
                consumer_split = consumer[1]
            cap = 10 if quick else args.replay_cap
            step(f"4. projection replay (rebuild) over the topic, capped at {cap:.0f} s")
            out = await guarded("replay", relay_replay.replay_bench(bench, relay_info, cap_s=cap,
                                                                    consumer_split=consumer_split))
            if out:
                results.append(out)
                if not out.met and not args.no_diagnose:
                    step("   target missed: what-if, the same rows written per Kafka batch (bench prototype)")
                    import projection_whatif

                    from opsat.common.db import create_engine

                    engine = create_engine(relay_info["url"])
                    try:
                        whatif = await guarded("projection_whatif", projection_whatif.run(
                            engine, relay_info["dsn"], infra.bootstrap, relay_info["topic"],
                            cap_s=8 if quick else 20))
                    finally:
                        await engine.dispose()
                    if whatif:
                        diagnosis["projection_batched_whatif"] = whatif

        # ---- 7. feedback: survey answers ---------------------------------------------------------------
        import feedback_answers

        step("7. feedback: survey answers per second over HTTP, answer -> CSAT read model latency")
        out = await guarded("feedback_answers", feedback_answers.throughput(
            bench, concurrency=32, seconds=4 if quick else 10, surveys=2_000 if quick else 6_000))
        if out:
            results.append(out[0])
        out = await guarded("feedback_latency", feedback_answers.latency(bench, rate=50.0, seconds=4 if quick else 8))
        if out:
            results.append(out)

        # ---- 8. risk: signal evaluation over a replay of upstream events ------------------------------
        import risk_signals

        step("8. risk: signal evaluation over a replay of 100k upstream events (batched, and per event capped)")
        out = await guarded("risk_signals", risk_signals.run(bench, events=20_000 if quick else risk_signals.EVENTS,
                                                             per_event_cap_s=8 if quick else 20))
        if out:
            results += out

        # ---- 5. peak RSS --------------------------------------------------------------------------------
        for role, label in (("api", "API (each uvicorn worker process)"), ("worker", "worker process")):
            kb = bench.peak_rss_kb.get(role)
            results.append(Result.measured(f"peak_rss_{role}", r(kb / 1024, 1) if kb else None, "MB", ("<=", 150), {
                "what": f"highest VmHWM of the {label} over the benchmarks it served "
                        + ("(submit throughput 1 and 2 workers, latency run)" if role == "api" else
                           "(latency run: relay + projection + scheduler at 200 events/s)"),
                "note": "relay catch-up and replay ran inside the bench process, not a service process"}))

        # ---- 7. appraisal: scorecards of a quarter ----------------------------------------------------
        import scorecards

        step("7. appraisal: scorecards for 500 engineers x 90 days of facts (COPY-loaded)")
        out = await guarded("appraisal_scorecards", scorecards.run(bench, days=30 if quick else 90))
        if out:
            results += out

        # ---- 9. SLA monitor: deadline-to-event lag and clock updates from a replay ---------------------
        import sla_clocks

        step("8. SLA: timers fired with 100,000 open clocks (lag), then a replay of intake events (clock updates/s)")
        sizes = sla_clocks.QUICK if quick else {}
        out = await guarded("sla_clocks", sla_clocks.run(bench, **sizes))
        if out:
            results += out
    finally:
        step("cleaning up: processes, databases, topics")
        await bench.cleanup()

    # ---- ratios ---------------------------------------------------------------------------------------
    by = {x.name: x for x in results}

    def val(name: str) -> float | None:
        return by[name].value if name in by and by[name].value else None

    best_submit = max((v for v in (val("submit_throughput_1worker"), val("submit_throughput_2worker")) if v),
                      default=None)
    best_relay = val("relay_catchup_batch2000")  # the relay as configured (the other batch size is a comparison)
    notify = extra.get("append_shape_16conn_commits_per_s", {})
    ratios = {
        "submits_per_s / raw_single_insert_16conn": _ratio(best_submit, val("limit_pg_single_insert_16conn")),
        "submits_per_s / append_shape_with_notify_16conn": _ratio(
            best_submit, notify.get("events+outbox+notify_trigger (as migrated)")),
        "relay_events_per_s / ProducerPerformance_records_per_s": _ratio(
            best_relay, val("limit_kafka_producer_performance")),
        "replay_events_per_s / aiokafka_consumer_records_per_s": _ratio(
            val("projection_replay"), val("limit_kafka_consumer_aiokafka")),
        "risk_signal_evaluation / aiokafka_consumer_records_per_s": _ratio(
            val("risk_signal_evaluation"), val("limit_kafka_consumer_aiokafka")),
        "risk_signal_evaluation / raw_single_insert_16conn": _ratio(
            val("risk_signal_evaluation"), val("limit_pg_single_insert_16conn")),
        "risk_signal_evaluation batched / per_event": _ratio(
            val("risk_signal_evaluation"), val("risk_signal_evaluation_per_event")),
        "sla_clock_updates_per_s / aiokafka_consumer_records_per_s (same topic)": _ratio(
            val("sla_clock_updates_per_s"), val("limit_kafka_consumer_aiokafka_sla_replay_topic"), 5),
        "sla_timers_fired_per_s / deadline_claim_rows_per_s": _ratio(
            by["sla_deadline_to_event_lag_p99"].details.get("fired_per_s (first to last warned event)")
            if "sla_deadline_to_event_lag_p99" in by else None, val("limit_pg_deadline_claim_rows_per_s"), 5),
    }

    for x in results:
        x.write()
    duration = time.perf_counter() - started
    summary = {
        "run_id": bench.id, "timestamp": now_iso(), "machine": machine(), "duration_s": r(duration, 1),
        "results": [asdict(x) for x in results], "ratios": ratios, "postgres_append_shape_whatif": notify,
        "diagnosis": diagnosis, "failures": failures, "logs": str(bench.logs),
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print_report(results, ratios, notify, diagnosis, failures, duration)
    return 1 if failures else 0


def _ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return r(a / b, digits) if a and b else None


def print_report(results: list[Result], ratios: dict[str, Any], notify: dict[str, Any], diagnosis: dict[str, Any],
                 failures: dict[str, str], duration: float) -> None:
    by = {x.name: x for x in results}
    m = machine()
    print()
    print(f"opsat bench — {m['nproc']} cores ({m['cpu']}), Python {m['python']}, {now_iso()}, {duration:.0f} s")
    print()
    rows = []
    for x in results:
        if x.target is None:
            continue
        rows.append([x.name, x.target, x.value, x.unit, "yes" if x.met else "NO", _note(x)])
    print(table(rows, ["benchmark", "target", "measured", "unit", "met", "notes"]))
    print()
    print(table([[x.name, x.value, x.unit, _note(x)] for x in results if x.target is None
                 and not x.name.startswith("feedback_")], ["limit (same run)", "measured", "unit", "notes"]))
    print()
    print(table([[x.name, x.value, x.unit, _note(x)] for x in results if x.target is None
                 and x.name.startswith("feedback_")], ["figure (no target)", "measured", "unit", "notes"]))
    print()
    print(table([[k, v] for k, v in ratios.items()], ["ratio", "value"]))
    if notify:
        print()
        print(table([[k, v] for k, v in notify.items()],
                    ["append statement, 16 connections (what-if)", "commits/s"]))
    layers = diagnosis.get("submit_layers")
    if layers:
        print()
        rows = [[k, v["ops_per_s"], v["process_cpu_ms_per_op"], v["p50_ms"]] for k, v in layers.items()
                if isinstance(v, dict) and "ops_per_s" in v]
        print(table(rows, ["submit, layer by layer (in-process, 32 in flight)", "ops/s", "CPU ms/op", "p50 ms"]))
        deps = layers.get("sync_deps", {})
        if deps:
            print("  what-if, 4 dependencies per route: " + ", ".join(
                f"{k}: {v['process_cpu_ms_per_op']} ms CPU/op" for k, v in deps.items()))
    batched = diagnosis.get("projection_batched_whatif")
    if batched:
        print(f"  what-if projection writing per Kafka batch (bench/projection_whatif.py): {batched['events_per_s']} "
              f"events/s ({batched['applied']:,} events in {batched['seconds']} s) vs projection_replay "
              f"{by['projection_replay'].value if 'projection_replay' in by else '-'} events/s")
    pool = diagnosis.get("pool_whatif")
    if pool:
        print(f"  what-if {pool['setting']}: " + "; ".join(
            f"{k} {v['submits_per_s']} submits/s, p99 {v['p99_ms']} ms, {v['new_postgres_sessions_during_run']} new "
            f"PG sessions, PostgreSQL {v['cpu']['cores_busy'].get('postgres')} cores, other programs "
            f"{v['cpu']['cores_busy'].get('other_programs')} cores" for k, v in pool.items() if isinstance(v, dict)))
    check = diagnosis.get("load_generator_check")
    if check:
        print("  load generator: " + "; ".join(
            f"{k}: {v['submits_per_s']} submits/s, client {v['client_cpu_ms_per_request']} ms CPU/request "
            f"({v['client_cores_busy']} cores)" for k, v in check.items()))
    for name in ("submit_throughput_1worker", "submit_throughput_2worker", "command_to_read_model_latency_p99",
                 "relay_catchup_batch2000", "projection_replay"):
        if name in by and "cpu" in by[name].details:
            busy = by[name].details["cpu"]["cores_busy"]
            print(f"  cores busy during {name}: " + ", ".join(f"{k} {v}" for k, v in busy.items()))
    if failures:
        print()
        for k, v in failures.items():
            print(f"FAILED {k}: {v}")
    print()
    print(f"results: {RESULTS}/<name>.json and summary.json")


def _note(x: Result) -> str:
    d = x.details
    if x.name.startswith("submit_throughput"):
        lat = d["latency"]
        return (f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, errors {sum(d['errors'].values())}, "
                f"{d['concurrency']} in flight, API {d['api_cpu_ms_per_request']} ms CPU/req, "
                f"{d['new_postgres_sessions_during_run']} new PG sessions")
    if x.name.startswith("command_to_read_model_latency_p99"):
        s = d["latency_from_http_response"]
        relay, proj = d["split_response_to_kafka (relay)"], d["split_kafka_to_read_model (projection)"]
        return (f"p50 {s['p50_ms']} ms; relay p50/p99 {relay['p50_ms']}/{relay['p99_ms']} ms, projection p50/p99 "
                f"{proj['p50_ms']}/{proj['p99_ms']} ms; {d['achieved_rate_per_s']}/s sent, "
                f"missing {d['missing_in_read_model_after_wait']}")
    if x.name.startswith("relay_catchup"):
        sp = d["split_one_batch_before_drain"]
        return (f"{d['published']:,} events in {d['seconds']} s; per event: fetch {sp['fetch_pending_us_per_event']}"
                f" + build {sp['build_message_us_per_event']} + send/ack {sp['producer_send_until_acked_us_per_event']}"
                f" us, ~{sp['avg_message_bytes']:.0f} B")
    if x.name == "projection_replay":
        cap = f", stopped at the {d['capped_at_s']:.0f} s cap" if d["capped_at_s"] else ""
        spent = d.get("cpu_us_per_event") or {}
        budget = (f"; CPU {spent['machine_busy']} us/event of the {spent['allowed_at_target (all cores, whole time)']}"
                  f" the target allows (replay {spent.get('replay (this process and its lane processes)')}, "
                  f"PostgreSQL {spent.get('postgres')}, Kafka {spent.get('kafka')})" if spent else "")
        return (f"{d['applied']:,} of {d['topic_events']:,} events in {d['seconds']} s{cap}; {d['us_per_event']} "
                f"us/event{budget}")
    if x.name == "risk_signal_evaluation":
        b = d["batched"]
        return (f"{b['applied']:,} of {b['of_events']:,} events in {b['seconds']} s, {b['roundtrips_per_event']} PG "
                f"round trips/event; {d['ratio_batched_to_per_event']}x per event")
    if x.name == "risk_signal_evaluation_per_event":
        cap = f", stopped at the {d['capped_at_s']:.0f} s cap" if d["capped_at_s"] else ""
        return f"{d['applied']:,} events in {d['seconds']} s{cap}, {d['roundtrips_per_event']} PG round trips/event"
    if x.name == "sla_deadline_to_event_lag_p99":
        return (f"p50 {d['lag_p50_ms']} ms, max {d['lag_max_ms']} ms; {d['measured']:,} of {d['timers_due']:,} timers "
                f"due over {d['window_s']:.0f} s, {d['open_clocks']['open_clocks']:,} open clocks, load {d['load_avg_after'][0]}")
    if x.name == "sla_clock_updates_per_s":
        cap = f", stopped at the {d['capped_at_s']:.0f} s cap" if d["capped_at_s"] else ""
        split = d.get("split_in_process") or {}
        return (f"{d['clock_commands_committed (distinct causation ids)']:,} updates from {d['topic']['events']:,} "
                f"intake events{cap}; CPU ms/update {d['cpu_ms_per_clock_update']}; in-process "
                f"{split.get('round_trips_per_event_total')} PG round trips, {split.get('process_cpu_ms_per_event')} ms "
                f"CPU per event; load {d['load_avg_after'][0]}")
    if x.name == "limit_pg_deadline_claim_rows_per_s":
        return f"claim p50 {d['claim_query_p50_ms']} ms (50 rows, skip locked) + a delete per row, no commands"
    if x.name.startswith("peak_rss"):
        return d["what"]
    if x.name == "limit_kafka_producer_performance":
        return f"{d['records']:,} x {d['record_bytes']} B, acks=all, linger 5 ms, {d['MB_per_s']} MB/s"
    if x.name.startswith("limit_kafka_consumer_aiokafka"):
        return f"{d['records']:,} records in {d['seconds']} s"
    if x.name == "limit_pg_single_insert_16conn":
        return f"{d['connections']} connections, one INSERT per transaction"
    if x.name == "limit_pg_executemany_1txn":
        return f"{d['rows']:,} rows, one transaction"
    return ""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the bench itself)")
    parser.add_argument("--concurrency", type=int, default=48, help="submits in flight (default 48)")
    parser.add_argument("--replay-cap", type=float, default=40.0, help="seconds the replay may take (default 40)")
    parser.add_argument("--no-diagnose", action="store_true", help="skip the layer split when a target is missed")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def with_signals() -> int:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
        return await main(args)

    try:
        sys.exit(asyncio.run(with_signals()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; cleaned up what this run started", file=sys.stderr)
        sys.exit(130)
