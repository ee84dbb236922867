"""pytest plugin: real Kafka and PostgreSQL fixtures.

Nothing is started unless a test requests one of these fixtures, so pure unit tests need no
infrastructure. The first request runs `deploy/local/infra.sh up` (a fast no-op when it is
already running) unless external infrastructure is configured (see opsat.common.testing.infra).
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient

from opsat.common.service import Service
from opsat.common.testing.infra import (
    LocalInfra,
    consume_all,
    delete_topics_under,
    namespaces_made,
    new_topic_namespace,
    provide,
)
from opsat.common.testing.service import ServiceHarness, running, settings_for_tests

__all__ = ["LocalInfra", "ServiceHarness", "consume_all"]

# Scenario modules shared by several test files: plain asserts there should explain themselves too.
pytest.register_assert_rewrite("opsat.common.testing.store_contract")


@pytest.fixture(scope="session")
def local_infra(pytestconfig: pytest.Config) -> LocalInfra:
    return provide(pytestconfig.rootpath, Path(__file__).resolve().parent)


@pytest.fixture(scope="session")
def kafka_bootstrap(local_infra: LocalInfra) -> Iterator[str]:
    """The broker; at the session's end, the topics of the namespaces its tests made are deleted, as their databases
    are dropped. A developer's broker otherwise keeps every test's topics: after many runs, 2,899 of them and 1.9 GB,
    which `make bench` then runs beside."""
    yield local_infra.kafka_bootstrap
    loop = asyncio.new_event_loop()  # (not asyncio.run: it would unset the loop pytest-asyncio may still use)
    try:
        loop.run_until_complete(delete_topics_under(local_infra.kafka_bootstrap, namespaces_made()))
    except Exception as exc:  # best effort: a broker a fault test left down keeps them
        warnings.warn(f"the session's topics were not deleted: {type(exc).__name__}: {exc}", stacklevel=1)
    finally:
        loop.close()


@pytest.fixture
def topic_namespace() -> str:
    """A unique prefix per test, so that each test has its own `{namespace}.<service>.events` topics."""
    return new_topic_namespace()


# The databases outlive no loop-bound object, so they work whatever loop scope a test uses.
@pytest_asyncio.fixture(loop_scope="session")
async def database_factory(local_infra: LocalInfra) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Call to create a fresh database, empty or a copy of `template`; returns its SQLAlchemy (asyncpg) URL.
    Dropped afterwards."""
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(local_infra.database_admin_url).set(drivername="postgresql")
    admin_dsn = admin.render_as_string(hide_password=False)
    created: list[str] = []

    async def create(template: str | None = None) -> str:
        name = f"opsat_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        finally:
            await conn.close()
        created.append(name)
        return admin.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)

    yield create
    if created:
        conn = await asyncpg.connect(admin_dsn)
        try:
            for name in created:  # FORCE: connections a test left open must not keep the database alive
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def migrated_template(local_infra: LocalInfra) -> AsyncIterator[Callable[[Service], Awaitable[str]]]:
    """`await migrated_template(SERVICE)`: the name of a database holding the service's migrations, run once per
    session; `run_service` copies it (CREATE DATABASE ... TEMPLATE), cheaper than migrating every test's database.
    Each copy is still upgraded when the service starts, a no-op unless the migrations changed meanwhile."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from opsat.common.migrations import upgrade

    admin = make_url(local_infra.database_admin_url).set(drivername="postgresql")
    admin_dsn = admin.render_as_string(hide_password=False)
    templates: dict[tuple[str, str], str] = {}
    lock = asyncio.Lock()  # two services started side by side must not both build one template

    async def template(service: Service) -> str:
        key = (service.name, str(service.migrations))
        async with lock:
            if key not in templates:
                name = f"opsat_template_{uuid.uuid4().hex[:12]}"
                conn = await asyncpg.connect(admin_dsn)
                try:
                    await conn.execute(f'CREATE DATABASE "{name}"')
                finally:
                    await conn.close()
                templates[key] = name
                url = admin.set(drivername="postgresql+asyncpg", database=name)
                await asyncio.to_thread(upgrade, url.render_as_string(hide_password=False), service.migrations)
            return templates[key]

    yield template
    if templates:
        conn = await asyncpg.connect(admin_dsn)
        try:
            for name in templates.values():
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def database_url(database_factory: Callable[[], Awaitable[str]]) -> str:
    """A fresh database for this test: `postgresql+asyncpg://opsat@127.0.0.1:<port>/opsat_test_<id>`."""
    return await database_factory()


@pytest_asyncio.fixture(loop_scope="session")
async def openapi_contract(database_factory: Callable[[], Awaitable[str]], kafka_bootstrap: str,
                           topic_namespace: str, pytestconfig: pytest.Config) -> Callable[..., object]:
    """`openapi_contract(SERVICE)`: schemathesis over every operation of the service's API, every check on
    (see opsat.common.testing.contract); fails listing what failed. `--contract-examples N --contract-stateful` runs it longer."""
    from opsat.common.testing.contract import check_contract

    database_url = await database_factory()

    def check(service, **options: object):  # type: ignore[no-untyped-def]
        settings = settings_for_tests(service, database_url, kafka_bootstrap, topic_namespace)
        options.setdefault("max_examples", pytestconfig.getoption("contract_examples"))
        options.setdefault("stateful", pytestconfig.getoption("contract_stateful"))
        report = check_contract(service, settings, **options)  # type: ignore[arg-type]
        print(f"\nschemathesis, {service.name}: {report.summary()}")
        problems = report.failures + report.errors
        assert report.cases > report.operations and not problems, report.summary() + "\n" + "\n".join(problems)
        return report

    return check


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--contract-examples", type=int, default=3,
                     help="examples per operation and phase in the OpenAPI contract run (default 3)")
    parser.addoption("--contract-stateful", action="store_true",
                     help="add schemathesis' stateful phase (links between operations) to the contract run")


@pytest_asyncio.fixture
async def kafka_admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def run_service(database_factory: Callable[..., Awaitable[str]],
                      migrated_template: Callable[[Service], Awaitable[str]], kafka_bootstrap: str,
                      topic_namespace: str) -> AsyncIterator[Callable[..., Awaitable[ServiceHarness]]]:
    """`await run_service(SERVICE, harness=MyHarness, **settings)`: the service migrated on a fresh database,
    its app served in-process, sharing this test's topic namespace; stopped when the test ends."""
    async with AsyncExitStack() as stack:
        async def start(service, harness: type[ServiceHarness] = ServiceHarness, **overrides: object) -> ServiceHarness:  # type: ignore[no-untyped-def]
            database = await database_factory(template=await migrated_template(service))
            settings = settings_for_tests(service, database, kafka_bootstrap, topic_namespace, **overrides)
            return await stack.enter_async_context(running(service, settings, harness))

        yield start
