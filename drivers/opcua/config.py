"""Configuration of machines read over OPC UA: one endpoint (server) per machine, signals by node id or path."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.models import MachineBase, Strict
from gateway.signals import TYPE_HELP, SignalKind, SignalSettings

NODE_HELP = "use e.g. nsu=urn:vendor:machine;s=Spindle.Speed, ns=2;i=1001 or i=2258"
_NODE = re.compile(r"^(?:(?:nsu=[^;]+|ns=\d+);)?(?:i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=[A-Za-z0-9+/=]+)$")
_ENDPOINT = re.compile(r"^opc\.tcp://[^/\s:]+(?::\d{1,5})?(?:/\S*)?$")

SecurityPolicyName = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]
SecurityModeName = Literal["Sign", "SignAndEncrypt"]
Timestamp = Literal["source", "server", "gateway"]


class Security(Strict):
    """How the secure channel to the server is protected and whose certificates are trusted."""

    policy: SecurityPolicyName = Field(
        description="Security policy: Basic256Sha256, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss; None (no "
        "signing, no encryption) only when written explicitly, and logged as a warning at every connect."
    )
    mode: SecurityModeName | None = Field(
        default=None, description="Sign or SignAndEncrypt (required unless policy is None)."
    )
    certificate: str | None = Field(
        default=None,
        description="The gateway's application certificate (DER or PEM), e.g. made by `kartech opcua cert`.",
    )
    private_key: str | None = Field(default=None, description="Private key of the application certificate (PEM).")
    private_key_password: str | None = Field(
        default=None, description="Password of the private key, if it has one: write it as ${ENV_VAR}."
    )
    trust_dir: str | None = Field(
        default=None,
        description="Directory of trusted server certificates (*.der, *.pem). A server whose certificate is not "
        "there is refused; its certificate is saved under <trust_dir>/../rejected/ for review.",
    )
    trust_on_first_use: bool = Field(
        default=False,
        description="Save an unknown server certificate into trust_dir on first contact and trust it from then on "
        "(logged). Only for commissioning a bench; never in production.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Security:
        if self.policy == "None":
            if self.mode is not None:
                raise ValueError(f"mode {self.mode} needs a security policy; with policy None leave mode out")
            return self
        if self.mode is None:
            raise ValueError(f"policy {self.policy} needs mode: Sign or SignAndEncrypt")
        missing = [k for k in ("certificate", "private_key", "trust_dir") if getattr(self, k) is None]
        if missing:
            raise ValueError(
                f"policy {self.policy} needs {', '.join(missing)}; create the gateway certificate with "
                "`kartech opcua cert --out DIR` and put trusted server certificates in trust_dir"
            )
        return self


class Identity(Strict):
    """Who the gateway is to the server once the channel is open."""

    type: Literal["anonymous", "username", "certificate"] = Field(
        default="anonymous", description="anonymous, username (with password) or certificate (X.509 user token)."
    )
    username: str | None = Field(default=None, description="User name (type username).")
    password: str | None = Field(default=None, description="Password (type username): write it as ${ENV_VAR}.")
    certificate: str | None = Field(default=None, description="User certificate (type certificate), DER or PEM.")
    private_key: str | None = Field(default=None, description="Private key of the user certificate (PEM).")

    @model_validator(mode="after")
    def _complete(self) -> Identity:
        if self.type == "username" and not self.username:
            raise ValueError("type username needs username: and password: ${ENV_VAR}")
        if self.type == "certificate" and not (self.certificate and self.private_key):
            raise ValueError("type certificate needs certificate: and private_key:")
        return self


class SignalConfig(SignalSettings):
    """One signal: where it is in the server's address space; how its value is read is shared by every driver."""

    node: str | None = Field(
        default=None,
        description="Node id: nsu=<namespace URI>;s=... or ;i=... (the index is looked up at every connect), or a "
        "plain node id (ns=2;s=..., i=2258). Without nsu=/ns= the machine's `namespace` applies (ns 0 if unset).",
    )
    path: str | None = Field(
        default=None,
        description="Browse path from the Root folder instead of a node id, names separated by '/', e.g. "
        "Objects/Mill-01/Spindle/Speed (resolved at every connect).",
    )
    auto_type: ClassVar[bool] = True
    type: SignalKind = Field(default="auto", description=TYPE_HELP)
    index: int | None = Field(
        default=None, ge=0, description="For an array node: the element to read (arrays are refused without it)."
    )
    sampling_interval_s: float | None = Field(
        default=None, ge=0, description="Server-side sampling interval of this signal; default: the machine's."
    )
    queue_size: int | None = Field(
        default=None, ge=1, le=10_000,
        description="Values the server queues between publishes for this signal (1 = latest only); default: the "
        "machine's.",
    )
    deadband_type: Literal["absolute", "percent"] = Field(
        default="absolute",
        description="absolute: deadband in the value's unit; percent: in percent of the node's EURange. The server "
        "applies it (subscribe mode); in poll mode every value read is reported.",
    )
    timestamp: Timestamp | None = Field(
        default=None, description="Overrides the machine's timestamp choice for this signal."
    )

    @field_validator("node")
    @classmethod
    def _node(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not _NODE.match(v):
            raise ValueError(f"is not an OPC UA node id; {NODE_HELP}")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = [p for p in v.strip("/").split("/") if p]
        if not parts:
            raise ValueError("is empty; use e.g. Objects/Mill-01/Spindle/Speed")
        return "/".join(parts)

    @model_validator(mode="after")
    def _address(self) -> SignalConfig:
        if (self.node is None) == (self.path is None):
            raise ValueError("give exactly one of node: or path: (e.g. node: nsu=urn:vendor:machine;s=Spindle.Speed)")
        return self


class OpcuaMachine(MachineBase):
    """A machine (or PLC) with its own OPC UA server: one connection per machine, so a hung server stalls no other."""

    driver: Literal["opcua"] = Field(description="opcua")
    endpoint: str = Field(description="Server endpoint URL, e.g. opc.tcp://10.0.3.17:4840.")
    security: Security = Field(
        description="Security policy and trust; write `security: {policy: None}` to connect without it (logged)."
    )
    identity: Identity = Field(default_factory=Identity, description="User identity (default anonymous).")
    namespace: str | None = Field(
        default=None, description="Namespace URI used by node ids written without nsu= or ns=."
    )
    read: Literal["subscribe", "poll"] = Field(
        default="subscribe",
        description="subscribe: the server reports changes (sampling, queue, deadband per signal); poll: the "
        "gateway reads every signal each poll_interval_s (for servers with broken subscriptions).",
    )
    publishing_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="How often the server sends collected changes (subscribe mode)."
    )
    sampling_interval_s: float = Field(
        default=1.0, ge=0, le=3600, description="Default server-side sampling interval of every signal."
    )
    queue_size: int = Field(
        default=10, ge=1, le=10_000,
        description="Default per-signal server queue between publishes; a value lost to a full queue is counted "
        "(bad_input reason server_queue_overflow).",
    )
    poll_interval_s: float = Field(default=1.0, gt=0, le=3600, description="Read period in poll mode.")
    timestamp: Timestamp = Field(
        default="source",
        description="Which time a reading carries: source (the device), server, or gateway (on receipt). A "
        "missing source time falls back to the server's, then to the gateway's.",
    )
    timeout_s: float = Field(default=5.0, gt=0, le=300, description="Time allowed for one request to the server.")
    watchdog_s: float = Field(
        default=2.0, gt=0, le=300,
        description="The session is checked this often (server state read + subscription keep-alive); a dead or "
        "silent session is detected within watchdog_s + timeout_s and the connection is rebuilt.",
    )
    reconnect_max_s: float = Field(
        default=2.0, gt=0, le=3600,
        description="Longest wait between reconnect attempts after a loss: the first attempt is at once, then "
        "1 s doubling up to this (with jitter), so fresh values return within about this long of the server.",
    )
    signals: dict[str, SignalConfig] = Field(
        min_length=1, description="Signal name -> node and how to read it."
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        v = v.strip()
        if _ENDPOINT.match(v):
            return v
        m = re.match(r"^(?:[a-z][a-z0-9+.-]*://)?([^/\s]+)", v, re.IGNORECASE)
        host = m.group(1) if m else "HOST:4840"
        if ":" not in host:
            host += ":4840"
        raise ValueError(f"is not an OPC UA address; use opc.tcp://{host}")
