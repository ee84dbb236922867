"""Shared bench plumbing: infra, throwaway databases, service processes, /proc accounting, results.

Everything runs on 127.0.0.1 against deploy/local/infra.sh's Kafka and PostgreSQL. Each run has
its own id: databases `opsat_bench_<id>_<what>`, topic namespaces `bench<id>[<what>]` (every topic
name of the run starts with `bench<id>`), free ports chosen by the
kernel (never 8000/8001, which `make run` may hold). `Bench.cleanup()` stops every process this run
started (by pid / its own process group) and drops its databases and topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent  # the venv's bin (run.py is started with .venv/bin/python)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------- machine

def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": model,
        "mem_total_mb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------- results

@dataclass
class Result:
    name: str
    value: float | None
    unit: str
    target: str | None  # e.g. ">= 1000" / "<= 250"; None for a reference limit
    met: bool
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=now_iso)
    machine: dict[str, Any] = field(default_factory=machine)

    @classmethod
    def measured(cls, name: str, value: float | None, unit: str, target: tuple[str, float] | None,
                 details: dict[str, Any]) -> Result:
        """`target` is (">=" | "<=", bound); None marks a reference limit (met is then vacuously true)."""
        if target is None:
            return cls(name, value, unit, None, True, {"kind": "limit (no target)", **details})
        op, bound = target
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        return cls(name, value, unit, f"{op} {bound:g}", met, details)

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        return path


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def summary_ms(values_s: list[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values_s]
    return {
        "count": len(ms),
        "p50_ms": r(pct(ms, 50)),
        "p90_ms": r(pct(ms, 90)),
        "p99_ms": r(pct(ms, 99)),
        "max_ms": r(max(ms)) if ms else None,
        "mean_ms": r(statistics.fmean(ms)) if ms else None,
    }


def uuid7_sql(at: str = "clock_timestamp()") -> str:
    """SQL for a UUID version 7 made at `at` (a timestamptz expression), as `opsat.common.ids.new_id` makes the
    product's ids (PostgreSQL 15 has no uuidv7()): the millisecond, then random bits."""
    return ("encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing substring(int8send(floor(extract("
            f"epoch from {at}) * 1000)::bigint) from 3) from 1 for 6), 52, 1), 53, 1), 'hex')::uuid")


def r(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


# ------------------------------------------------------------------------------------------- /proc

def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(p) for p in task.read_text().split()]
        except OSError:
            pass
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        if Path(f"/proc/{p}").exists():
            pids.append(p)
            todo += children(p)
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def postmaster_pid() -> int | None:
    try:
        return int((ROOT / ".local/pg/data/postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds() -> float:
    """CPU of this process and of its children that have ended (a rebuild's lane processes, forked and joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def postgres_cpu_seconds() -> float:
    """CPU of our PostgreSQL cluster: live server processes plus the reaped ones (the postmaster's
    cutime/cstime), so backends that exit during a measurement still count."""
    pm = postmaster_pid()
    if pm is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pm}/stat").read_text().rsplit(")", 1)[1].split()
        reaped = (int(fields[13]) + int(fields[14])) / CLK_TCK
    except (OSError, IndexError):
        reaped = 0.0
    return cpu_seconds(tree(pm)) + reaped


def machine_cpu_seconds() -> dict[str, float]:
    """Machine-wide busy and steal seconds from /proc/stat (all cores)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return {"busy": (user + nice + system + irq + softirq) / CLK_TCK, "iowait": iowait / CLK_TCK,
            "steal": steal / CLK_TCK}


def kafka_pid() -> int | None:
    try:
        pid = int((ROOT / ".local/run/kafka.pid").read_text().strip())
        return pid if b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
    except (OSError, ValueError):
        return None


def jvm_compiler_seconds(pid: int | None) -> float:
    """CPU seconds the JIT compiler threads (C1, C2) of JVM `pid` have used. A broker just started spends a good
    share of a core compiling for its first minutes of traffic (38 s of C2 in its first three here), which a
    latency step running then shares the two cores with."""
    if not pid:
        return 0.0
    ticks = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith(("C1 CompilerThre", "C2 CompilerThre")):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent by named process groups between start() and stop(), beside the machine's
    total (so that what other programs on a shared machine took is visible as "other").

    `groups` maps a name to a callable returning pids, or to a callable returning CPU seconds
    directly when named with a leading "=" (e.g. PostgreSQL, whose backends come and go)."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups
        self._start: dict[str, float] = {}
        self.wall = 0.0

    def _sample(self) -> dict[str, float]:
        out = {}
        for name, fn in self.groups.items():
            out[name.lstrip("=")] = fn() if name.startswith("=") else cpu_seconds(fn())
        m = machine_cpu_seconds()
        out["machine_busy"], out["machine_iowait"], out["machine_steal"] = m["busy"], m["iowait"], m["steal"]
        return out

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._start = self._sample()

    def stop(self, extra_cpu: dict[str, float] | None = None) -> dict[str, Any]:
        """`extra_cpu`: CPU seconds measured elsewhere in the same window (e.g. the load generators')."""
        end = self._sample()
        self.wall = time.perf_counter() - self._t0
        used = {name: end[name] - self._start.get(name, 0.0) for name in end}
        used.update(extra_cpu or {})
        ours = sum(v for k, v in used.items() if not k.startswith("machine_"))
        used["other_programs"] = max(0.0, used["machine_busy"] - ours)
        return {
            "wall_s": r(self.wall),
            "cores_available": len(os.sched_getaffinity(0)),
            "cores_busy": {k: r(v / self.wall) for k, v in used.items()} if self.wall else {},
        }


# ------------------------------------------------------------------------------------------- infra

@dataclass
class Infra:
    admin_url: str  # postgresql://opsat@127.0.0.1:<port>/postgres
    bootstrap: str

    @property
    def pg_base(self) -> str:
        return self.admin_url.rsplit("/", 1)[0]

    def dsn(self, db: str) -> str:
        return f"{self.pg_base}/{db}"

    def sqlalchemy_url(self, db: str) -> str:
        return self.dsn(db).replace("postgresql://", "postgresql+asyncpg://", 1)


def infra_up() -> Infra:
    """deploy/local/infra.sh up is idempotent: it returns at once when both are already running."""
    subprocess.run([str(ROOT / "deploy/local/infra.sh"), "up"], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    env = {}
    for line in (ROOT / ".local/env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip().strip("'\"")
    return Infra(env["OPSAT_DATABASE_ADMIN_URL"], env["OPSAT_KAFKA_BOOTSTRAP"])


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in (8000, 8001):
            return port


class ReadModelCommits:
    """A connection LISTENing on the read models' channel: `wait` returns at the next projection commit (its NOTIFY)
    or after `timeout_s`, so that a bench's poller asks PostgreSQL when something changed, not every few milliseconds
    beside what it measures."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._committed = asyncio.Event()

    @classmethod
    async def listen(cls, dsn: str) -> ReadModelCommits:
        from opsat.common.freshness import READ_MODEL_CHANNEL

        commits = cls(await asyncpg.connect(dsn))
        await commits._conn.add_listener(READ_MODEL_CHANNEL, lambda *_: commits._committed.set())
        return commits

    async def wait(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._committed.wait(), timeout_s)
        except TimeoutError:
            pass
        self._committed.clear()

    async def close(self) -> None:
        await self._conn.close()


# ------------------------------------------------------------------------------------------- processes

class Proc:
    """A service process in its own session/process group, so that it and its children (uvicorn
    workers) are stopped together by this run, and only they."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._fh = open(log, "ab")
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.popen.pid

    def pids(self) -> list[int]:
        return tree(self.pid) if self.popen.poll() is None else []

    def workers(self) -> list[int]:
        """The processes that serve: the uvicorn workers when there is a supervisor, else itself."""
        kids = children(self.pid)
        return kids or [self.pid]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)  # the group this Proc created (start_new_session)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        self._fh.close()

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


async def wait_http(url: str, proc: Proc, timeout: float = 120.0) -> None:  # imports take long on a busy machine
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{proc.tail()}")


# ------------------------------------------------------------------------------------------- another ref's code

def src_paths(tree: Path) -> list[str]:
    """The import path that puts a checkout's packages (libs/common and every service) first."""
    return [str(tree / "libs/common/src"), *(str(p) for p in sorted((tree / "services").glob("*/src")))]


@contextlib.contextmanager
def code_trees(compare: str | None) -> Iterator[dict[str, list[str]]]:
    """{"this tree": its import path} and, with a git ref, that ref's code checked out into a temporary
    worktree (removed when the block ends), under the ref's name."""
    trees = {"this tree": src_paths(ROOT)}
    tmp = None
    if compare:
        tmp = tempfile.mkdtemp(prefix="opsat-bench-ref-")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", tmp, compare], check=True,
                       capture_output=True)
        trees[compare] = src_paths(Path(tmp))
    try:
        yield trees
    finally:
        if tmp:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tmp], check=False)


def in_turn(trees: dict[str, list[str]], round_: int) -> list[tuple[str, list[str]]]:
    """The trees of a side-by-side run in the order of round `round_`: reversed every other round, so that neither
    always runs first (after the fill, or after the limit measured between rounds)."""
    order = list(trees.items())
    return order if round_ % 2 == 0 else order[::-1]


def run_child(script: str | Path, paths: list[str], args: list[str]) -> dict[str, Any]:
    """`script --child *args` in a fresh interpreter with `paths` first on the import path, so that it times
    that tree's code; the child prints its figures as JSON on its last line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run([sys.executable, str(script), "--child", *args], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- one run

class Bench:
    """One bench run's resources: its databases, topic namespace, processes and log folder."""

    def __init__(self, infra: Infra) -> None:
        self.infra = infra
        self.id = uuid.uuid4().hex[:8]
        self.namespace = f"bench{self.id}"
        self.logs = ROOT / ".local/logs" / f"bench-{self.id}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.databases: list[str] = []
        self.procs: list[Proc] = []
        self.peak_rss_kb: dict[str, int] = {}  # role -> highest VmHWM seen of one process of that role

    # --- databases -----------------------------------------------------------------------
    async def create_database(self, what: str, migrate: bool = True, service: str = "intake") -> str:
        name = f"opsat_bench_{self.id}_{what}"
        conn = await asyncpg.connect(self.infra.admin_url)
        try:
            await conn.execute(f'create database "{name}"')
        finally:
            await conn.close()
        self.databases.append(name)
        if migrate:
            env = self.service_env(name)
            out = subprocess.run([str(BIN / f"opsat-{service}"), "migrate"], env=env, cwd=ROOT, capture_output=True,
                                 text=True)
            if out.returncode:
                raise RuntimeError(f"opsat-{service} migrate failed:\n{out.stdout}\n{out.stderr}")
        return name

    async def drop_databases(self) -> None:
        if not self.databases:
            return
        conn = await asyncpg.connect(self.infra.admin_url)
        try:
            for name in self.databases:
                await conn.execute(f'drop database if exists "{name}" with (force)')
        finally:
            await conn.close()
        self.databases.clear()

    # --- processes -----------------------------------------------------------------------
    def service_env(self, database: str, http_port: int | None = None, worker_port: int | None = None,
                    namespace: str | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSAT_") or k.startswith("OPSAT_AUTH_")}
        env.update({
            "OPSAT_DATABASE_URL": self.infra.sqlalchemy_url(database),
            "OPSAT_KAFKA_BOOTSTRAP": self.infra.bootstrap,
            "OPSAT_TOPIC_NAMESPACE": namespace or self.namespace,
            "OPSAT_HTTP_HOST": "127.0.0.1",
            "OPSAT_HTTP_PORT": str(http_port or free_port()),
            "OPSAT_WORKER_PORT": str(worker_port or free_port()),
            "OPSAT_LOG_JSON": "true",
            "OPSAT_LOG_LEVEL": "WARNING",
            **extra,
        })
        return env

    async def start_api(self, database: str, workers: int, tag: str, namespace: str | None = None,
                        service: str = "intake", **env_extra: str) -> tuple[Proc, str]:
        """uvicorn with the app factory (create_app() reads OPSAT_* settings), `workers` processes."""
        port = free_port()
        env = self.service_env(database, http_port=port, namespace=namespace, **env_extra)
        args = [str(BIN / "uvicorn"), f"opsat.{service}.service:create_app", "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
        proc = Proc(f"api-{tag}", args, env, self.logs / f"api-{tag}.log")
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        await wait_http(url + "/readyz", proc)
        if workers > 1:  # every worker process must be up, not only the first to answer
            deadline = time.monotonic() + 20
            while len(children(proc.pid)) < workers and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
        return proc, url

    async def start_worker(self, database: str, tag: str, namespace: str | None = None, service: str = "intake",
                           **env_extra: str) -> Proc:
        port = free_port()
        env = self.service_env(database, worker_port=port, namespace=namespace, **env_extra)
        proc = Proc(f"worker-{tag}", [str(BIN / f"opsat-{service}"), "worker"], env, self.logs / f"worker-{tag}.log")
        self.procs.append(proc)
        await wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=60)
        return proc

    def record_rss(self, role: str, proc: Proc) -> dict[str, Any]:
        """VmHWM (peak RSS) of each serving process; must be read before the process exits."""
        per = {}
        for pid in proc.workers():
            hwm = status_kb(pid, "VmHWM")
            if hwm is not None:
                per[pid] = hwm
                self.peak_rss_kb[role] = max(self.peak_rss_kb.get(role, 0), hwm)
        return {"vmhwm_mb_per_process": {str(k): r(v / 1024, 1) for k, v in per.items()}}

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    # --- topics --------------------------------------------------------------------------
    async def create_topics(self, topics: dict[str, int], configs: dict[str, dict[str, str]] | None = None) -> None:
        """Create topics ({name: partitions}, one replica, `configs` per name) in this run's namespace if missing.
        The bench creates the topics itself (as the worker would), so it depends on nothing but the broker."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        assert all(t.startswith(self.namespace) for t in topics)  # only this run's topics
        admin = AIOKafkaAdminClient(bootstrap_servers=self.infra.bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [NewTopic(t, p, 1, topic_configs=(configs or {}).get(t, {}))
                       for t, p in topics.items() if t not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()

    async def delete_topics(self) -> list[str]:
        from opsat.common.testing.infra import delete_topics_under

        return await delete_topics_under(self.infra.bootstrap, [self.namespace])  # (also `{namespace}lag.…`)

    async def cleanup(self) -> None:
        for proc in list(self.procs):
            proc.stop()
        self.procs.clear()
        errors = []
        for step in (self.drop_databases, self.delete_topics):
            try:
                await step()
            except Exception as exc:  # keep cleaning
                errors.append(f"{step.__name__}: {exc}")
        if errors:
            print("cleanup problems: " + "; ".join(errors), file=sys.stderr)


@contextlib.contextmanager
def count_roundtrips() -> Iterator[Counter[str]]:
    """Count this process's asyncpg calls that each make one round trip to PostgreSQL, by kind
    ("prepare INSERT", "execute BEGIN", "bind+execute INSERT", ...). Wraps asyncpg's own methods for
    the duration only (a bench instrument; the product code is untouched)."""
    from asyncpg.connection import Connection
    from asyncpg.prepared_stmt import PreparedStatement

    counts: Counter[str] = Counter()

    def kind(sql: str) -> str:
        words = sql.split()
        return " ".join(words[:2]) if words[:1] == ["with"] else (words[0].upper() if words else "?")

    def wrap(cls: Any, name: str, label: str, sql_of: Any) -> Any:
        original = getattr(cls, name)

        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[f"{label} {kind(sql_of(self, args))}"] += 1
            return await original(self, *args, **kwargs)

        setattr(cls, name, wrapper)
        return original

    patched = []
    for cls, name, label, sql_of in [
        (Connection, "execute", "execute", lambda self, a: a[0] if a else ""),
        (Connection, "prepare", "prepare", lambda self, a: a[0] if a else ""),
        (Connection, "fetch", "fetch", lambda self, a: a[0] if a else ""),
        (Connection, "fetchval", "fetch", lambda self, a: a[0] if a else ""),
        (Connection, "fetchrow", "fetch", lambda self, a: a[0] if a else ""),
        (PreparedStatement, "fetch", "bind+execute", lambda self, a: self.get_query()),
        (PreparedStatement, "fetchval", "bind+execute", lambda self, a: self.get_query()),
        (PreparedStatement, "fetchrow", "bind+execute", lambda self, a: self.get_query()),
    ]:
        patched.append((cls, name, wrap(cls, name, label, sql_of)))
    try:
        yield counts
    finally:
        for cls, name, original in reversed(patched):
            setattr(cls, name, original)


def token(role: str = "requester", sub: str = "bench-user", org: str = "bench-org") -> str:
    from opsat.common.auth import mint_token
    from opsat.intake.settings import IntakeSettings

    # The services inherit this process's OPSAT_AUTH_* (see Bench.service_env), so the keys agree.
    return mint_token(IntakeSettings(), sub=sub, org=org, roles=[role], ttl_s=3600)


# Dev-mode tokens signed with a key of this run, unless the caller brought its own.
os.environ.setdefault("OPSAT_AUTH_MODE", "dev")
os.environ.setdefault("OPSAT_AUTH_DEV_KEY", secrets.token_hex(32))


SUBMIT_BODY = {
    "kind": "incident",
    "channel": "portal",
    "title": "Mail server unreachable from the branch office",
    "description": "Since this morning nobody at the branch can reach the mail server; webmail works. " * 3,
    "impact": 2,
    "urgency": 2,
    "service": "mail",
}
