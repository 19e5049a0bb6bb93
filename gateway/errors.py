"""One base error with a few named children; library errors are translated where they enter our code."""


class KartechError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(KartechError):
    """The site configuration is invalid; the message lists every problem."""


class DriverUnavailable(KartechError):
    """A driver lost (or could not reach) its machine or broker; the supervisor retries with backoff."""


class SinkError(KartechError):
    """A storage sink could not accept data for now; the batch is kept and retried."""


class SinkConfigError(KartechError):
    """A sink is misconfigured (wrong URL, endpoint that does not exist, bad credentials): retrying will not help."""
