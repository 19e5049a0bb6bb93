"""Machine state: the common state model, its derivation per kind, jobs, usage counters and events."""
