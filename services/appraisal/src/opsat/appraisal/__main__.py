"""`python -m opsat.appraisal` = `opsat-appraisal`."""

from opsat.appraisal.service import main

main()
