"""The one alembic environment of every service (versions come from the service's own folder)."""

from opsat.common.migrations import run_env

run_env()
