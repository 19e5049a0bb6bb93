"""Built-in alert rules per machine kind, used unless `alerts.defaults: false`.

They rely only on the signal names our drivers and simulators produce (`state`, `nozzle_temp`/`nozzle_target`,
`temperature`/`setpoint`/`heater_pct`/`door_open`); a machine without a rule's signals is simply never matched.
A site rule with the same id replaces a built-in one; `alerts.disable` switches one off.
"""

from __future__ import annotations

from gateway.config.operations import (
    AlertRule,
    AlertsSection,
    Check,
    ConditionRule,
    Message,
    OfflineRule,
    StateRule,
    ThresholdRule,
)

DEFAULT_RULES: tuple[AlertRule, ...] = (
    ThresholdRule(
        id="printer-thermal-runaway", type="threshold", severity="critical", kinds=["printer"],
        signal="nozzle_temp", relative_to="nozzle_target", above=15.0, hysteresis=5.0, on_delay_s=2.0,
        when=[Check(signal="nozzle_target", above=0.0)],
        message=Message(
            en="{machine_name}: nozzle at {value} {unit}, above its target — thermal runaway? Check the printer "
               "at once.",
            ru="{machine_name}: сопло {value} {unit}, выше заданной — тепловой разгон? Немедленно проверьте "
               "принтер."),
    ),
    ThresholdRule(
        id="furnace-overshoot", type="threshold", severity="high", kinds=["furnace"], signal="temperature",
        relative_to="setpoint", above=25.0, hysteresis=5.0, on_delay_s=10.0,
        when=[Check(signal="setpoint", above=0.0)],
        message=Message(en="{machine_name}: {value} {unit}, overshoot above the setpoint (limit {limit} {unit}).",
                        ru="{machine_name}: {value} {unit}, перегрев выше уставки (предел {limit} {unit})."),
    ),
    ConditionRule(
        # a Bambu Lab printer's HMS codes (drivers/bambu: `hms`, e.g. HMS_0300_0200_0001_0003), as the alert's value
        id="printer-hms", type="condition", severity="medium", kinds=["printer"], on_delay_s=0.0,
        when=[Check(signal="hms", present=True)],
        message=Message(
            en="{machine_name}: the printer reports {value} — look the code up in the maker's HMS wiki.",
            ru="{machine_name}: принтер сообщает о неисправности {value} — найдите код в HMS-справке производителя."),
    ),
    ThresholdRule(
        # the spool feeding a printer's nozzle nearly empty during a job (drivers/bambu: `filament_remain_pct`, the
        # AMS's estimate); a printer without the signal is never matched
        id="printer-filament-low", type="threshold", severity="medium", kinds=["printer"], states=["running"],
        signal="filament_remain_pct", below=10.0, hysteresis=2.0, on_delay_s=0.0,
        message=Message(
            en="{machine_name}: {value} {unit} of filament left on the loaded spool — have the next spool ready "
               "before this print runs out.",
            ru="{machine_name}: на катушке осталось {value} {unit} пластика — подготовьте следующую катушку, пока "
               "печать не остановилась."),
    ),
    ConditionRule(
        id="furnace-door-open-heating", type="condition", severity="critical", kinds=["furnace"], on_delay_s=2.0,
        when=[Check(signal="door_open", equals=True), Check(signal="heater_pct", above=5.0)],
        message=Message(en="{machine_name}: door open while heating.",
                        ru="{machine_name}: дверь открыта во время нагрева."),
    ),
    StateRule(
        id="machine-error", type="state", severity="high", states=["error"],
        message=Message(en="{machine_name} reports an error.", ru="{machine_name}: ошибка оборудования."),
    ),
    StateRule(
        id="machine-error-unattended", type="state", severity="critical", states=["error"], on_delay_s=300.0,
        message=Message(en="{machine_name} has been in error for {duration}.",
                        ru="{machine_name} в состоянии ошибки уже {duration}."),
    ),
    OfflineRule(
        id="machine-offline", type="offline", severity="medium", on_delay_s=60.0,
        message=Message(en="{machine_name} sends no data (offline for {duration}).",
                        ru="{machine_name} не передаёт данные (нет связи {duration})."),
    ),
)


def effective_rules(section: AlertsSection) -> list[AlertRule]:
    """The site's rules plus the built-in ones it does not replace or disable."""
    own = {r.id for r in section.rules}
    rules: list[AlertRule] = []
    if section.defaults:
        rules += [r for r in DEFAULT_RULES if r.id not in own and r.id not in section.disable]
    rules += [r for r in section.rules if r.id not in section.disable]
    return rules
