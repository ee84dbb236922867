"""`AggregateSet`: several kinds of stream in one service, each command decided by the member naming it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from opsat.common.commands import AggregateSet, CommandHandler


@dataclass(frozen=True)
class Ring:
    bell_id: str


@dataclass(frozen=True)
class Open:
    door_id: str


@dataclass(frozen=True)
class Paint:
    wall_id: str


class Bells:
    stream_type, id_field, commands = "bell", "bell_id", frozenset({Ring})

    def __init__(self, settings: object) -> None:
        self.settings = settings


class Doors:
    stream_type, id_field, commands = "door", "door_id", frozenset({Open})

    def __init__(self, settings: object) -> None:
        self.settings = settings


class House(AggregateSet):
    members = (Bells, Doors)


def test_a_set_names_every_members_commands_and_routes_each_to_its_member():
    assert House.commands == frozenset({Ring, Open})
    house = House(settings="s")
    handler = CommandHandler("house", store=None, aggregate=house)  # type: ignore[arg-type]
    assert isinstance(handler.aggregate_for(Ring), Bells) and handler.aggregate_for(Open).id_field == "door_id"
    assert handler.aggregate_for(Ring).settings == "s"
    with pytest.raises(KeyError):
        handler.aggregate_for(Paint)


def test_a_single_aggregate_is_its_own_member():
    bells = Bells(settings=None)
    assert CommandHandler("bells", store=None, aggregate=bells).aggregate_for(Ring) is bells  # type: ignore[arg-type]
