from opsat.common.migrations import run_env

run_env()
