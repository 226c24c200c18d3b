"""The classes of fixtures/formats/user_classes.pt (scripts/make_fixtures.py defines them in
the writing process only): a test makes them importable to check `allow=`."""

import dataclasses
import enum


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Phase(enum.Enum):
    TRAIN = "train"


@dataclasses.dataclass
class Opt:
    lr: float = 0.1
    betas: tuple = (0.9, 0.999)
    color: Color = Color.GREEN
    tags: list = dataclasses.field(default_factory=lambda: ["a", "b"])


class Thing:
    def __init__(self):
        self.x = 1
        self.items = [1, 2]
