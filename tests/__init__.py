"""fedcare's test suites."""
