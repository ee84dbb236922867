"""`python -m opsat.intake` = `opsat-intake`."""

from opsat.intake.service import main

main()
