"""The SLA monitor's pure domain: calendars and policies (versioned configuration) and clocks."""
