"""Kartech Gateway: machines in, telemetry, state, alerts and billing out."""

__version__ = "0.1.0"
