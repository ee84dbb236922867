"""`python -m opsat.feedback` = `opsat-feedback`."""

from opsat.feedback.service import main

main()
