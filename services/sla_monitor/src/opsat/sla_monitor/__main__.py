"""`python -m opsat.sla_monitor` = `opsat-sla`."""

from opsat.sla_monitor.service import main

main()
