"""Site-file sections for operations: machine state, alert rules, notifications, maintenance plans, shifts.

Every field carries its description, so the JSON Schema, docs/operations.md and the error text share one source.
References between sections (unknown machines, kinds, labs, brokers) are checked in `gateway.config.references`.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.models import SLUG, Strict

MachineStateName = Literal["offline", "idle", "running", "paused", "error", "maintenance"]
Severity = Literal["critical", "high", "medium", "low"]
SEVERITY_RANK: dict[str, int] = {"critical": 4, "high": 3, "medium": 2, "low": 1}
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TEMPLATE_FIELDS = ("machine", "machine_name", "kind", "lab", "rule", "severity", "signal", "value", "unit",
                   "limit", "state", "duration", "count")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
Loc = tuple[str | int, ...]


# --- state ----------------------------------------------------------------------------------------------------
class StateCondition(Strict):
    """The machine is in `state` while `signal` meets every condition written, e.g. {signal: alarm_code, above: 0,
    state: error} or {signal: execution_state, equals: OutOfService, state: maintenance}."""

    state: MachineStateName = Field(description="The machine state while the conditions hold.")
    signal: str = Field(min_length=1, description="The machine's signal whose latest good value is looked at.")
    equals: str | float | None = Field(
        default=None, description="The value equals this (text without regard to case, spaces, dashes or dots; "
        "true/false for booleans).")
    in_: list[str | float] | None = Field(default=None, alias="in", min_length=1,
                                          description="The value is one of these (compared like equals).")
    above: float | None = Field(default=None, description="The value (a number; true counts 1) is above this.")
    below: float | None = Field(default=None, description="The value (a number) is below this.")

    @model_validator(mode="after")
    def _condition(self) -> StateCondition:
        if self.equals is None and self.in_ is None and self.above is None and self.below is None:
            raise ValueError(f"rule for {self.state} needs a condition on signal {self.signal}: equals, in, above "
                             "or below (e.g. above: 0)")
        if self.equals is not None and self.in_ is not None:
            raise ValueError("give equals or in, not both")
        return self


class StateMapping(Strict):
    """How one machine kind (or one machine) shows its state, jobs and counters. Unset keys keep the defaults
    of the kind (see docs/operations.md); `null` switches a default signal off."""

    rules: list[StateCondition] | None = Field(
        default=None, description="State from any signal: the first rule whose conditions hold decides, before "
        "the machine's own state signal, heater or power. Written for a machine, they replace its kind's rules.")
    state_signal: str | None = Field(
        default=None, description="Signal reporting the machine's own state (printer state, OPC UA execution "
        "state), read through the built-in words (Printing, Executing, FeedHold, ...); anything else is "
        "decided by rules. Default: state.")
    heater_signal: str | None = Field(
        default=None, description="Heater output in % (furnaces): above heater_busy_pct means running. "
        "Default: heater_pct.")
    setpoint_signal: str | None = Field(
        default=None, description="Setpoint signal: a setpoint above 0 means a programme is running. "
        "Default: setpoint.")
    heater_busy_pct: float | None = Field(default=None, ge=0, le=100,
                                          description="Heater output above this % means running. Default 1.")
    power_signal: str | None = Field(
        default=None, description="Power draw in W: above power_busy_w for busy_after_s means running, "
        "below for idle_after_s means idle. Default: power_w.")
    power_busy_w: float | None = Field(default=None, ge=0, description="Idle threshold of power draw in W. "
                                       "Default 50.")
    busy_after_s: float | None = Field(default=None, ge=0, description="Heater or power must show work this "
                                       "long before the machine counts as running. Default 30 (furnaces 0).")
    idle_after_s: float | None = Field(default=None, ge=0, description="... and show no work this long "
                                       "before it counts as idle again. Default 60.")
    cycle_signal: str | None = Field(
        default=None, description="Machine counter of parts or cycles (increasing; a reset is handled). "
        "Default: part_count, or cycle_count when the machine has that.")
    good_signal: str | None = Field(default=None, description="Counter of good parts, for OEE quality. "
                                    "Default: good_count.")
    reject_signal: str | None = Field(default=None, description="Counter of rejected parts, for OEE quality "
                                      "(good = parts - rejects). Default: reject_count.")
    ideal_cycle_s: float | None = Field(default=None, gt=0, description="Ideal time of one part or cycle, "
                                        "for OEE performance. Unset: performance is not computed.")
    material_signal: str | None = Field(
        default=None, description="Material used by the current job (restarts at each job), e.g. filament in "
        "mm. Default: filament_used_mm.")
    material_unit: Literal["mm", "m"] | None = Field(default=None, description="Unit of material_signal. "
                                                     "Default mm.")
    energy_signal: str | None = Field(
        default=None, description="Energy meter of the machine (a cumulative counter, e.g. a smart plug's or a "
        "DIN-rail meter's total, mapped into the machine's signals); what it adds during a job or a check-in is "
        "billed at the rate card's per_kwh. Default: energy_kwh.")
    energy_unit: Literal["kWh", "Wh"] | None = Field(default=None, description="Unit of energy_signal. "
                                                     "Default kWh.")
    badge_signal: str | None = Field(
        default=None, description="Badge reader at the machine (over serial or MQTT): each reading is one swipe "
        "of a badge id, which checks its user (billing.users[].badges) in or out. Publish swipes unretained. "
        "Default: badge.")
    running_hours_signal: str | None = Field(
        default=None, description="Machine-reported operating hours counter (e.g. OPC UA Machinery "
        "operation counters); used instead of the gateway's own count of running time when present. "
        "Default: none.")
    job_file_signal: str | None = Field(default=None, description="Name of the current job. Default: job_file.")
    job_id_signal: str | None = Field(default=None, description="Id of the current job; a new id is a new "
                                      "job. Default: job_id.")
    job_event_signal: str | None = Field(default=None, description="Job start/end events (start, end, cancel, "
                                         "fail) as reported by serial printers. Default: job_event.")

    @model_validator(mode="before")
    @classmethod
    def _no_state_map(cls, data: object) -> object:
        if isinstance(data, dict) and "state_map" in data:
            raise ValueError("state_map is replaced by rules: write one rule per value, e.g. rules: [{signal: "
                             "state, equals: Running Program, state: running}]")
        return data


class StateTopics(Strict):
    """Retained MQTT topics with each machine's current state, for other systems (SCADA, dashboards)."""

    broker: str = Field(description="Id of the broker (under mqtt.brokers) to publish to.")
    topic: str = Field(default="kartech/{site}/{machine}/state",
                       description="Topic template; {site} and {machine} are filled in.")
    qos: Literal[0, 1] = Field(default=1, description="MQTT QoS of state messages.")

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if "#" in v or "+" in v:
            raise ValueError("must not contain MQTT wildcards; use {site} and {machine}")
        return v


class StateSection(Strict):
    stale_min_s: float = Field(default=10.0, gt=0, description="A machine is offline when it sent nothing for "
                               "max(3 x expected_interval_s, this many seconds).")
    kinds: dict[str, StateMapping] = Field(default_factory=dict,
                                           description="Per machine kind: how its state and counters are read.")
    machines: dict[str, StateMapping] = Field(default_factory=dict,
                                              description="Per machine id: overrides of its kind's mapping.")
    mqtt: StateTopics | None = Field(default=None, description="Publish retained state topics to a broker.")


# --- alerts ---------------------------------------------------------------------------------------------------
class Message(Strict):
    """Message template in both languages; placeholders: {machine}, {machine_name}, {kind}, {lab}, {rule},
    {severity}, {signal}, {value}, {unit}, {limit}, {state}, {duration}, {count}."""

    en: str = Field(min_length=1, description="English text.")
    ru: str = Field(min_length=1, description="Russian text.")

    @field_validator("en", "ru")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        except ValueError as err:
            raise ValueError(f"is not a valid template ({err}); write placeholders as {{value}}, "
                             "and a literal brace as {{ or }}") from None
        for name in names:
            if name not in TEMPLATE_FIELDS:
                raise ValueError(f"has unknown placeholder {{{name}}}; use " +
                                 ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS))
        return v


class Check(Strict):
    """A condition on one signal's latest good value."""

    signal: str = Field(description="Signal name.")
    above: float | None = Field(default=None, description="True when the value is above this.")
    below: float | None = Field(default=None, description="True when the value is below this.")
    equals: bool | float | str | None = Field(default=None, description="True when the value equals this.")
    present: bool | None = Field(default=None, description="true: true while the signal has a value (a text not "
                                 "empty), e.g. a printer's error codes; false: while it has none.")

    @model_validator(mode="after")
    def _one(self) -> Check:
        given = [k for k in ("above", "below", "equals", "present") if getattr(self, k) is not None]
        if not given:
            raise ValueError("needs one of above, below, equals or present")
        if ("equals" in given or "present" in given) and len(given) > 1:
            raise ValueError("use one of equals, present or above/below, not several")
        return self


class _Rule(Strict):
    id: str = Field(pattern=SLUG, description="Rule id, unique in the file (alerts are grouped by rule and "
                    "machine).")
    severity: Severity = Field(description="critical | high | medium | low; notifications are routed by it.")
    message: Message = Field(description="What the technician reads, in English and Russian.")
    machines: list[str] = Field(default_factory=list, description="Machine ids the rule applies to.")
    kinds: list[str] = Field(default_factory=list, description="Machine kinds the rule applies to.")
    labs: list[str] = Field(default_factory=list, description="Labs the rule applies to. With no machines, "
                            "kinds or labs the rule applies to every machine.")
    states: list[MachineStateName] = Field(default_factory=list, description="Evaluate only while the machine "
                                           "is in one of these states (e.g. running); a state rule raises while "
                                           "the machine is in one of them.")
    when: list[Check] = Field(default_factory=list, description="Extra conditions that must all hold too.")
    on_delay_s: float = Field(default=0.0, ge=0, description="The condition must hold this long before the "
                              "alert is raised.")
    off_delay_s: float = Field(default=0.0, ge=0, description="... and be gone this long before it clears.")


class ThresholdRule(_Rule):
    """A signal above or below a limit, with hysteresis; `relative_to` compares against another signal."""

    type: Literal["threshold"] = Field(description="threshold")
    signal: str = Field(description="Signal to watch.")
    above: float | None = Field(default=None, description="Raise when the value (minus relative_to) is above "
                                "this.")
    below: float | None = Field(default=None, description="Raise when the value (minus relative_to) is below "
                                "this.")
    relative_to: str | None = Field(default=None, description="Compare signal - relative_to, e.g. temperature "
                                    "against setpoint for an overshoot.")
    hysteresis: float = Field(default=0.0, ge=0, description="Clear only once the value is this far back inside "
                              "the limit (a deadband against chattering).")

    @model_validator(mode="after")
    def _limit(self) -> ThresholdRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("needs exactly one of above or below")
        return self


class RateRule(_Rule):
    """A signal changing faster than a rate, measured over a window."""

    type: Literal["rate"] = Field(description="rate")
    signal: str = Field(description="Signal to watch.")
    rise_per_min: float | None = Field(default=None, gt=0, description="Raise when it rises faster than this "
                                       "per minute.")
    fall_per_min: float | None = Field(default=None, gt=0, description="Raise when it falls faster than this "
                                       "per minute.")
    window_s: float = Field(default=60.0, gt=0, description="Rate measured over this many seconds.")

    @model_validator(mode="after")
    def _rate(self) -> RateRule:
        if self.rise_per_min is None and self.fall_per_min is None:
            raise ValueError("needs rise_per_min or fall_per_min")
        return self


class StateRule(_Rule):
    """The machine in one of `states`, e.g. error for more than 5 minutes (states: [error], on_delay_s: 300)."""

    type: Literal["state"] = Field(description="state")

    @model_validator(mode="after")
    def _states(self) -> StateRule:
        if not self.states:
            raise ValueError("needs states: the states that raise it, e.g. states: [error]")
        return self


class ConditionRule(_Rule):
    """Every check of `when` holds at once, e.g. door open while heating."""

    type: Literal["condition"] = Field(description="condition")

    @model_validator(mode="after")
    def _checks(self) -> ConditionRule:
        if not self.when:
            raise ValueError("needs at least one check under when:")
        return self


class OfflineRule(_Rule):
    """The machine sent no data (it was seen before); use on_delay_s for how long."""

    type: Literal["offline"] = Field(description="offline")


AlertRule = Annotated[ThresholdRule | RateRule | StateRule | ConditionRule | OfflineRule,
                      Field(discriminator="type")]


class AlertsSection(Strict):
    defaults: bool = Field(default=True, description="Use the built-in rules per kind (printer error and "
                           "thermal runaway, furnace overshoot and door open while heating, machine error, "
                           "offline). Rules below with the same id replace them.")
    disable: list[str] = Field(default_factory=list, description="Ids of built-in rules to switch off.")
    notify_window_s: float = Field(default=300.0, ge=0, description="At most one notification per rule and "
                                   "machine in this many seconds; repeats in between only raise the count.")
    rules: list[AlertRule] = Field(default_factory=list, description="Alert rules of this site.")


# --- notifications --------------------------------------------------------------------------------------------
class _Channel(Strict):
    id: str = Field(pattern=SLUG, description="Channel id, shown in logs and `kartech alerts test-notify`.")
    min_severity: Severity = Field(default="high", description="Notify alerts of this severity and worse.")
    labs: list[str] = Field(default_factory=list, description="Only alerts of machines in these labs "
                            "(default: every lab).")
    on_clear: bool = Field(default=False, description="Also notify when an alert clears.")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Timeout of one delivery attempt.")


class WebhookChannel(_Channel):
    type: Literal["webhook"] = Field(description="webhook: POST the alert as JSON.")
    url: str = Field(description="http(s) URL to POST to.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers, e.g. "
                                    "Authorization: Bearer ${WEBHOOK_TOKEN}.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("is not an http(s) URL; use e.g. https://hooks.example.kz/kartech")
        return v


class EmailChannel(_Channel):
    type: Literal["email"] = Field(description="email: send through an SMTP server.")
    host: str = Field(description="SMTP server host.")
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port (587 starttls, 465 tls, 25 none).")
    security: Literal["starttls", "tls", "none"] = Field(default="starttls", description="Connection security.")
    username: str | None = Field(default=None, description="SMTP user, if the server needs a login.")
    password: str | None = Field(default=None, description="SMTP password: write it as ${ENV_VAR}.")
    sender: str = Field(description="From address, e.g. kartech-gateway@lab.kz.")
    to: list[str] = Field(min_length=1, description="Recipients.")


class TelegramChannel(_Channel):
    type: Literal["telegram"] = Field(description="telegram: a message from a bot to a chat.")
    token: str = Field(description="Bot token from @BotFather: write it as ${ENV_VAR}.")
    chat_id: str = Field(description="Chat or channel id (e.g. -1001234567890).")
    api_url: str = Field(default="https://api.telegram.org", description="Bot API base URL.")


class MqttChannel(_Channel):
    type: Literal["mqtt"] = Field(description="mqtt: publish the alert as JSON.")
    broker: str = Field(description="Id of the broker (under mqtt.brokers).")
    topic: str = Field(default="kartech/{site}/alerts/{machine}",
                       description="Topic template; {site}, {machine} and {severity} are filled in.")
    qos: Literal[0, 1] = Field(default=1, description="MQTT QoS.")


Channel = Annotated[WebhookChannel | EmailChannel | TelegramChannel | MqttChannel, Field(discriminator="type")]


class RetryPolicy(Strict):
    initial_s: float = Field(default=2.0, gt=0, description="First retry after this many seconds ...")
    max_s: float = Field(default=300.0, gt=0, description="... doubling up to this.")
    max_attempts: int = Field(default=30, ge=1, description="Give up (and log) after this many attempts.")


class NotificationsSection(Strict):
    channels: list[Channel] = Field(default_factory=list, description="Where alerts are sent.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Retry with backoff per delivery.")


# --- maintenance ----------------------------------------------------------------------------------------------
class Usage(Strict):
    running_h: float | None = Field(default=None, gt=0, description="Hours in the running state (print, "
                                    "spindle or firing hours).")
    cycles: float | None = Field(default=None, gt=0, description="Parts, cycles or jobs.")
    material_m: float | None = Field(default=None, gt=0, description="Material used in metres (filament).")
    days: float | None = Field(default=None, gt=0, description="Calendar days.")

    def items(self) -> list[tuple[str, float]]:
        return [(k, v) for k in ("running_h", "cycles", "material_m", "days") if (v := getattr(self, k))]


class MaintenancePlan(Strict):
    id: str = Field(pattern=SLUG, description="Task id, used in the API path .../{machine}/{task}/done.")
    name: str = Field(description="What to do, shown to technicians.")
    machines: list[str] = Field(default_factory=list, description="Machine ids the task applies to.")
    kinds: list[str] = Field(default_factory=list, description="Machine kinds the task applies to.")
    every: Usage = Field(description="Due after this much use, whichever limit comes first.")
    warn_at_pct: float | None = Field(default=None, gt=0, le=100, description="Due soon from this percentage "
                                      "of the limit (default: maintenance.warn_at_pct).")
    already_used: Usage | None = Field(default=None, description="Use before the gateway started counting "
                                       "(until the task is first marked done), e.g. print hours since the "
                                       "last nozzle change.")

    @model_validator(mode="after")
    def _limits(self) -> MaintenancePlan:
        if not self.every.items():
            raise ValueError("every: needs at least one of running_h, cycles, material_m, days")
        if not self.machines and not self.kinds:
            raise ValueError("needs machines or kinds it applies to")
        return self


class MaintenanceSection(Strict):
    warn_at_pct: float = Field(default=90.0, gt=0, le=100, description="A task is due soon from this "
                               "percentage of its limit.")
    plans: list[MaintenancePlan] = Field(default_factory=list, description="Maintenance tasks.")


# --- shifts ---------------------------------------------------------------------------------------------------
def _hhmm(v: str) -> str:
    if not _HHMM.match(v):
        raise ValueError("is not a time of day; write HH:MM, e.g. 08:00 (24:00 for midnight at the end)")
    return v


class Shift(Strict):
    id: str = Field(pattern=SLUG, description="Shift id (e.g. day, night).")
    start: str = Field(description="Start, HH:MM in the site's time zone.")
    end: str = Field(description="End, HH:MM; an end at or before the start means the next day.")
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), description="Weekdays the shift "
                                "starts on (mon..sun).")

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        return _hhmm(v)


class PlannedDowntime(Strict):
    name: str = Field(description="What it is (lunch, cleaning, planned maintenance).")
    start: str = Field(description="Start, HH:MM in the site's time zone.")
    end: str = Field(description="End, HH:MM.")
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), description="Weekdays it happens on.")

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        return _hhmm(v)


def _all_day() -> list[Shift]:
    return [Shift(id="day", start="00:00", end="24:00")]


class ShiftsSection(Strict):
    calendar: list[Shift] = Field(default_factory=_all_day, description="Planned production time: the shifts. "
                                  "Default: one shift around the clock.")
    planned_downtime: list[PlannedDowntime] = Field(default_factory=list, description="Breaks inside shifts "
                                                    "that are not planned production time.")
