"""Offline checks of docker-compose.yml, the Dockerfile and .dockerignore (no Docker engine needed).

They catch what `docker compose up` would only reveal at run time: a dependency on a service that does
not exist, a one-shot migration restarted forever, an OPSAT_* typo, a port published twice, a database
the init script never creates, a build context that leaves out the sources, a root container, a password
written into the file, a database reachable from the network.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock
from urllib.parse import urlparse

import pytest
import yaml
from described import described

from opsat.common.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yml"
COMMANDS = {"api", "worker", "migrate"}


ENV_SCRIPT = REPO / "deploy" / "compose" / "env.sh"
SECRETS = {"POSTGRES_PASSWORD", "OPSAT_AUTH_DEV_KEY"}
sys.path.insert(0, str(REPO / "deploy" / "tools"))
import compose as compose_generator  # noqa: E402


def interpolate(value, env: dict[str, str]):
    """Compose's ${VAR:-default} / ${VAR-default} / ${VAR:?error} / ${VAR} / $$, resolved with `env` only
    (what `docker compose --env-file` passes), so the checks see what everybody gets."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def resolve(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if name in env and (env[name] or ":" not in op):
            return env[name]
        assert "?" not in op, f"compose would stop: {name} is required ({arg})"
        return arg

    value = value.replace("$$", "\0")
    value = re.sub(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}", resolve, value)
    assert "$" not in value, f"unsupported interpolation in {value!r}"
    return value.replace("\0", "$")


def read_env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture(scope="module")
def compose_env(tmp_path_factory) -> dict[str, str]:
    """The env file `make compose-env` writes, from the same script."""
    path = tmp_path_factory.mktemp("compose") / "compose.env"
    subprocess.run([str(ENV_SCRIPT), str(path)], check=True, timeout=30)
    return read_env_file(path)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # safe_load resolves anchors and `<<:` merges


@pytest.fixture(scope="module")
def services(raw, compose_env) -> dict[str, dict]:
    return interpolate(raw["services"], compose_env)


def opsat_services(services: dict) -> dict[str, dict]:
    """The services built from our Dockerfile."""
    return {name: svc for name, svc in services.items() if "build" in svc}


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):  # the KEY=value list form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def settings_class(service: str | None) -> type[ServiceSettings]:
    """The service's own settings class (from its description): it may add OPSAT_* fields."""
    found = described(service) if service else None
    return found.settings if found is not None else ServiceSettings


def settings_from(svc: dict) -> ServiceSettings:
    """The settings the service builds from this container's environment (no other OPSAT_* leaks in)."""
    service = svc.get("build", {}).get("args", {}).get("SERVICE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSAT_")} | environment(svc)
    with mock.patch.dict(os.environ, env, clear=True):
        return settings_class(service)()


def published(svc: dict) -> list[tuple[int, int]]:
    """(host port, container port) pairs of the short "host:container" syntax."""
    pairs = []
    for port in svc.get("ports", []):
        parts = str(port).split("/")[0].split(":")
        assert len(parts) >= 2, f"{port}: publish with an explicit host port"
        pairs.append((int(parts[-2]), int(parts[-1])))
    return pairs


def depends_on(svc: dict) -> dict[str, str]:
    deps = svc.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


# --- compose ---------------------------------------------------------------------------------------------

def test_depends_on_targets_exist_and_conditions_can_be_met(services):
    for name, svc in services.items():
        for target, condition in depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy: no healthcheck"
            if condition == "service_completed_successfully":
                # A one-shot that compose restarts after exit 0 never "completes": the dependants hang.
                assert services[target].get("restart", "no") in {"no", "on-failure"}, target


def test_no_dependency_cycles(services):
    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join(path + (name,))}"
        for target in depends_on(services[name]):
            visit(target, path + (name,))

    for name in services:
        visit(name, ())


def test_opsat_env_keys_are_known_settings_with_valid_values(services):
    for name, svc in services.items():
        service = svc.get("build", {}).get("args", {}).get("SERVICE")
        known = {f"OPSAT_{field.upper()}" for field in settings_class(service).model_fields}
        unknown = {k for k in environment(svc) if k.startswith("OPSAT_")} - known
        assert not unknown, f"{name}: not fields of the service's settings (typo?): {sorted(unknown)}"
        if "build" in svc:
            settings = settings_from(svc)  # raises on a value the service would reject
            assert settings.http_host == "0.0.0.0", f"{name}: must listen on all interfaces in a container"


def test_image_build_arg_matches_service_and_command(services):
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG SERVICE\b", dockerfile, re.M), "the Dockerfile must take the SERVICE build argument"
    seen: dict[str, set[str]] = {}
    for name, svc in opsat_services(services).items():
        service = svc["build"]["args"]["SERVICE"]
        (command,) = svc["command"]
        assert name == f"{service}-{command}", f"{name}: expected <service>-<command> naming"
        assert command in COMMANDS, name
        assert settings_from(svc).service_name == service, name
        # The image runs `opsat-<service>`: some package must install that program.
        scripts = "".join(p.read_text() for p in (REPO / "services").glob("*/pyproject.toml"))
        assert f'opsat-{service} = "' in scripts, f"{name}: no service installs opsat-{service}"
        seen.setdefault(service, set()).add(command)
    assert seen and all(commands == COMMANDS for commands in seen.values()), seen


def test_migrations_run_before_api_and_worker(services):
    for name, svc in opsat_services(services).items():
        service, _, command = name.rpartition("-")
        deps = depends_on(svc)
        if command == "migrate":
            assert deps.get("postgres") == "service_healthy", name
        else:
            assert deps.get(f"{service}-migrate") == "service_completed_successfully", name
            assert deps.get("kafka") == "service_healthy" and deps.get("postgres") == "service_healthy", name


def test_feedback_sends_its_emails_to_the_stacks_smtp_sink(services):
    for name in ("feedback-migrate", "feedback-api", "feedback-worker"):
        settings = settings_from(services[name])
        assert settings.smtp_host in services, f"{name}: OPSAT_SMTP_HOST names no compose service"
        sink = services[settings.smtp_host]
        assert "build" not in sink and "healthcheck" in sink, settings.smtp_host
        bind = environment(sink)["MP_SMTP_BIND_ADDR"]
        assert bind.rpartition(":")[2] == str(settings.smtp_port), f"{name}: the sink listens on {bind}"
    ui = environment(services["smtp-sink"])["MP_UI_BIND_ADDR"].rpartition(":")[2]
    assert int(ui) in [container for _, container in published(services["smtp-sink"])], "the caught mail is unreadable"


def test_host_ports_do_not_collide(services):
    host_ports = [host for svc in services.values() for host, _ in published(svc)]
    assert len(host_ports) == len(set(host_ports)), f"host port published twice: {sorted(host_ports)}"


def test_api_and_worker_publish_and_probe_their_configured_port(services):
    for name, svc in opsat_services(services).items():
        settings = settings_from(svc)
        command = svc["command"][0]
        if command == "migrate":
            continue
        port = settings.http_port if command == "api" else settings.worker_port
        assert port in [container for _, container in published(svc)], name
        probe = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in probe, f"{name}: healthcheck not on the service's /readyz"


def test_databases_exist_and_urls_point_at_compose_services(services):
    postgres = services["postgres"]
    mounts = [v.split(":") for v in postgres["volumes"]]
    (init,) = [REPO / src for src, dst, *_ in mounts if dst.startswith("/docker-entrypoint-initdb.d/")]
    created = set(re.findall(r"CREATE DATABASE\s+(\w+)", init.read_text(), re.I))
    user = environment(postgres)["POSTGRES_USER"]
    password = environment(postgres)["POSTGRES_PASSWORD"]
    for name, svc in opsat_services(services).items():
        settings = settings_from(svc)
        url = urlparse(settings.database_url)
        service = svc["build"]["args"]["SERVICE"]
        assert url.scheme == "postgresql+asyncpg", name
        assert (url.hostname, url.port) == ("postgres", 5432), name
        assert (url.username, url.password) == (user, password), f"{name}: credentials differ from postgres'"
        assert url.path.lstrip("/") == service, f"{name}: one database per service, named after it"
        assert service in created, f"{init.name} does not create database {service}"


def test_kafka_bootstrap_is_an_advertised_listener(services):
    advertised = environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    addresses = {entry.split("://", 1)[1] for entry in advertised.split(",")}
    for name, svc in opsat_services(services).items():
        assert settings_from(svc).kafka_bootstrap in addresses, name


def test_opsat_containers_are_read_only_with_a_tmpfs(services):
    for name, svc in opsat_services(services).items():
        assert svc.get("read_only") is True, name
        assert "/tmp" in svc.get("tmpfs", []), name


def test_images_are_pinned(services):
    for name, svc in services.items():
        image = svc["image"]
        tag = image.rpartition(":")[2] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag and tag != "latest", f"{name}: pin {image}"


def test_secrets_come_only_from_the_env_file(raw, compose_env):
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{(\w+):?\?", text))
    assert SECRETS <= required, "passwords and keys must be required variables, never defaults"
    assert required <= set(compose_env), f"env.sh does not write {sorted(required - set(compose_env))}"
    for name in SECRETS:
        assert not re.search(rf"\$\{{{name}:?-", text), f"{name} has a literal default in the compose file"
    with pytest.raises(AssertionError, match="required"):  # without the env file compose refuses to start
        interpolate(raw["services"], {})
    for value in compose_env.values():
        assert value not in text


def test_env_file_is_random_private_and_never_overwritten(tmp_path, compose_env):
    path = tmp_path / "compose.env"
    subprocess.run([str(ENV_SCRIPT), str(path)], check=True, timeout=30)
    first = read_env_file(path)
    assert path.stat().st_mode & 0o077 == 0, "the env file must be readable by its owner only"
    for name in SECRETS:
        assert len(first[name]) >= 32 and first[name] != compose_env[name], f"{name} is not random"
    subprocess.run([str(ENV_SCRIPT), str(path)], check=True, timeout=30)
    assert read_env_file(path) == first, "a second run must keep the values the database volume already has"


def test_databases_and_kafka_listen_on_localhost_only(raw):
    for name, svc in raw["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published on every interface"


def test_compose_is_generated_from_the_service_list():
    assert COMPOSE.read_text() == compose_generator.render(), "out of date: run make generate"


def test_adding_a_service_is_one_entry_in_the_values(tmp_path, compose_env):
    values = yaml.safe_load(compose_generator.VALUES.read_text())
    values["services"]["sla_monitor"] = {"consumers": ["breaches"]}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    services = interpolate(yaml.safe_load(compose_generator.render(path))["services"], compose_env)
    extra = {n: s for n, s in services.items() if n.startswith("sla_monitor-")}
    assert set(extra) == {"sla_monitor-migrate", "sla_monitor-api", "sla_monitor-worker"}
    for svc in extra.values():
        assert svc["build"]["args"]["SERVICE"] == "sla_monitor"
        assert urlparse(environment(svc)["OPSAT_DATABASE_URL"]).path == "/sla_monitor"
    assert depends_on(extra["sla_monitor-api"])["sla_monitor-migrate"] == "service_completed_successfully"
    hosts = [host for svc in services.values() for host, _ in published(svc)]
    assert len(hosts) == len(set(hosts)), f"host ports collide: {sorted(hosts)}"


def test_makefile_services_are_the_chart_services():
    makefile = (REPO / "Makefile").read_text()
    listed = re.search(r"^SERVICES\s*:?=\s*(.*)$", makefile, re.M).group(1).split()
    assert listed == list(yaml.safe_load(compose_generator.VALUES.read_text())["services"])


# --- Dockerfile ------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_on_python_311_slim():
    instructions = dockerfile_instructions()
    bases = [args.split()[0] for op, args in instructions if op == "FROM"]
    assert len(bases) >= 2
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    resolved = {re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), b) for b in bases}
    assert resolved == {"python:3.11-slim"}
    installs = " ".join(a for op, a in instructions if op == "RUN")
    assert "-c constraints.txt" in installs, "install with the pinned constraints"


def test_dockerfile_runs_as_numeric_non_root_user():
    users = [args for op, args in final_stage() if op == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric, so runAsNonRoot can verify it"
    assert not [a for op, a in final_stage() if op == "RUN" and "useradd" not in a and "groupadd" not in a], \
        "nothing should run in the runtime stage beyond creating the user"


def test_dockerfile_entrypoint_runs_the_selected_service():
    stage = dict(final_stage())
    env = " ".join(args for op, args in final_stage() if op == "ENV")
    assert re.search(r"\bOPSAT_SERVICE=\$\{?SERVICE\}?(\s|$)", env), "ARG SERVICE must reach ENV OPSAT_SERVICE"
    entrypoint = " ".join(yaml.safe_load(stage["ENTRYPOINT"]))  # JSON exec form is valid YAML
    assert "exec" in entrypoint and "opsat-${OPSAT_SERVICE" in entrypoint and '"$@"' in entrypoint
    assert yaml.safe_load(stage["CMD"]) == ["api"]


def dockerignore_excludes(path: str) -> bool:
    """Docker's rules: patterns match the path or one of its parents; the last matching pattern wins."""
    excluded = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_build_copies_and_nothing_heavy():
    sources = []
    for op, args in dockerfile_instructions():
        if op == "COPY" and "--from" not in args:
            sources += args.split()[:-1]
    needed = []
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repo"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()
                                                and "__pycache__" not in p.parts and p.suffix != ".pyc"]
        needed += [str(p.relative_to(REPO)) for p in files]
    assert any(p.endswith("pyproject.toml") for p in needed)
    missing = [p for p in needed if dockerignore_excludes(p)]
    assert not missing, f".dockerignore drops files the build copies: {missing[:5]}"
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/unit/deploy/test_compose.py",
                  "libs/common/src/opsat/common/__pycache__/settings.cpython-311.pyc"):
        assert dockerignore_excludes(heavy), f"{heavy} would be sent to the build context"
