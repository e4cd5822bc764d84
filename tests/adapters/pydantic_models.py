"""Pydantic models as users write them, with every constraint structured output
must enforce: bounds (inclusive and exclusive), multiples, lengths, patterns,
formats, enums and literals, optional fields, maps, tuples, lists with bounds,
nested and recursive models, and a discriminated union."""

from __future__ import annotations

import datetime
import enum
import ipaddress
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=12)]
    age: Annotated[int, Field(ge=0, le=130)]
    score: Annotated[float, Field(gt=0, lt=10)]
    rating: Annotated[int, Field(ge=1, le=5, multiple_of=1)]
    step: Annotated[float, Field(multiple_of=0.25, ge=0, le=4)]
    code: Annotated[str, Field(pattern=r"^[A-Z]{2}\d{3}$")]
    nickname: str | None = None
    color: Color
    mood: Literal["happy", "sad"]
    tags: Annotated[list[str], Field(min_length=1, max_length=3)]
    counts: Annotated[dict[str, int], Field(max_length=3)]
    point: tuple[int, int]


class Event(BaseModel):
    when: datetime.datetime
    day: datetime.date
    id: uuid.UUID
    host: ipaddress.IPv4Address
    email: Annotated[str, Field(json_schema_extra={"format": "email"})]


class Tree(BaseModel):
    label: Annotated[str, Field(max_length=8)]
    children: Annotated[list[Tree], Field(max_length=2)] = []


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: Annotated[int, Field(ge=1, le=9)]


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Pet(BaseModel):
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    owner: Person | None = None


MODELS: tuple[type[BaseModel], ...] = (Person, Event, Tree, Pet)
