"""Virtual machines for every driver, plus launchers for the real services tests and benchmarks use."""
