"""Where telemetry is stored: InfluxDB (1.x, 2.x, 3.x) and the embedded local history."""

from gateway.sinks.base import HistoryRow, HistorySource, Rejected, Sink, SinkRetry, WriteResult
from gateway.sinks.history import LocalHistory
from gateway.sinks.influx import InfluxSink
from gateway.sinks.lineproto import Encoded, Line, LineEncoder, encode
from gateway.sinks.writer import InfluxWriter, RejectedLine

__all__ = [
    "Encoded",
    "HistoryRow",
    "HistorySource",
    "InfluxSink",
    "InfluxWriter",
    "Line",
    "LineEncoder",
    "LocalHistory",
    "Rejected",
    "RejectedLine",
    "Sink",
    "SinkRetry",
    "WriteResult",
    "encode",
]
