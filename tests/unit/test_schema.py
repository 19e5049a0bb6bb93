"""gateway/schema.py: the one definition of machine states that the state model, the config and the dashboards use."""

from __future__ import annotations

from typing import get_args

from dashboards import panels
from gateway import schema
from gateway.config.operations import MachineStateName
from gateway.machines import MACHINE_STATES
from gateway.state import model


def test_machine_states_are_defined_once() -> None:
    assert MACHINE_STATES is schema.MACHINE_STATES
    assert (model.OFFLINE, model.IDLE, model.RUNNING, model.PAUSED, model.ERROR, model.MAINTENANCE) == MACHINE_STATES
    assert get_args(MachineStateName) == MACHINE_STATES  # a Literal cannot be built from the tuple; pinned here
    assert set(panels.STATE_COLORS) == set(MACHINE_STATES)


def test_every_reported_word_maps_to_a_known_state() -> None:
    assert set(model.SYNONYMS.values()) == set(MACHINE_STATES)


def test_measurements_that_are_not_machine_kinds() -> None:
    assert schema.NOT_MACHINE_KINDS == ("events", "maintenance", "oee", "usage", "kartech_gateway")
