"""`python -m opsat.risk` = `opsat-risk`."""

from opsat.risk.service import main

main()
