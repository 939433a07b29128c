"""``Record`` against ``typing.NamedTuple``: the same class statement must make the same class.

Class statements are generated (seeded; the seed is printed) in both spellings, under ``from __future__ import
annotations`` as in tcptune's modules, and everything a caller can observe is compared.
"""

from __future__ import annotations

import os
import pickle
import random
import sys
import types
from typing import Any

import pytest

from tcptune.records import Record

SEED = int(os.environ.get("TCPTUNE_TEST_SEED", random.randrange(2**32)))
ANNOTATIONS = ["int", "str", "int | None", "tuple[str, ...]", "list[Undefined]", "Any", "dict[str, 'X']"]
DEFAULTS = ["0", "''", "None", "()", "'x'", "-1"]


def class_source(rng: random.Random, base: str) -> tuple[str, int]:
    """One class statement and its number of fields: required fields, then defaults, a docstring, a method."""
    count = rng.randint(0, 7)
    first_default = rng.randint(0, count)
    lines = ["from __future__ import annotations", "from typing import Any", f"class Sample({base}):"]
    if rng.random() < 0.7:
        lines.append('    """What it is."""')
    for index in range(count):
        default = f" = {rng.choice(DEFAULTS)}" if index >= first_default else ""
        lines.append(f"    f{index}_{rng.randint(0, 99)}: {rng.choice(ANNOTATIONS)}{default}")
    lines += [
        "    LIMIT = 3",
        "    def width(self) -> int:",
        "        return len(self) * self.LIMIT",
        "    @property",
        "    def first(self) -> Any:",
        "        return self[0] if self else None",
    ]
    return "\n".join(lines) + "\n", count


def build(source: str, base: Any, module: str) -> Any:
    namespace: dict[str, Any] = {"Record": base, "NamedTuple": base, "__name__": module}
    exec(compile(source, f"<{module}>", "exec"), namespace)
    return namespace["Sample"]


def observed(cls: Any, values: tuple[Any, ...]) -> dict[str, Any]:
    instance = cls(*values)
    replaced = instance._replace(**{name: "r" for name in cls._fields[:1]})
    return {
        "fields": cls._fields,
        "defaults": cls._field_defaults,
        # typing wraps each string in a ForwardRef; a record keeps the string: nothing in tcptune reads either
        "annotations": {name: getattr(hint, "__forward_arg__", hint) for name, hint in cls.__annotations__.items()},
        "doc": cls.__doc__ if "What it is" in (cls.__doc__ or "") else "generated",
        "name": (cls.__name__, cls.__qualname__, cls.__module__),
        "bases": cls.__bases__,
        "repr": repr(instance),
        "tuple": tuple(instance),
        "equal_to_tuple": instance == values,
        "asdict": instance._asdict(),
        "replaced": tuple(replaced),
        "made": tuple(cls._make(values)),
        "methods": (instance.width(), instance.first, cls.LIMIT),
        "hash": hash(instance) == hash(values),
    }


def test_records_behave_like_typing_named_tuples() -> None:
    print(f"TCPTUNE_TEST_SEED={SEED}")
    rng = random.Random(SEED)
    for _ in range(200):
        source, count = class_source(rng, "BASE")
        ours = build(source.replace("BASE", "Record"), Record, "records_sample")
        theirs = build(source.replace("BASE", "NamedTuple"), __import__("typing").NamedTuple, "records_sample")
        values = tuple(rng.randint(0, 9) for _ in range(count))
        assert observed(ours, values) == observed(theirs, values), source
        required = count - len(theirs._field_defaults)
        if required:
            with pytest.raises(TypeError):
                ours(*values[: required - 1])


def test_a_record_pickles_by_name_like_a_named_tuple() -> None:
    module = types.ModuleType("records_pickle_sample")
    sys.modules[module.__name__] = module
    try:
        source = "class Point(Record):\n    x: int\n    y: int = 0\n"
        namespace: dict[str, Any] = {"Record": Record, "__name__": module.__name__}
        exec(source, namespace)
        module.Point = namespace["Point"]  # type: ignore[attr-defined]
        point = namespace["Point"](1, 2)
        assert pickle.loads(pickle.dumps(point)) == point
    finally:
        del sys.modules[module.__name__]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("    a: int = 0\n    b: int\n", TypeError),  # a field without a default after one with
        ("    a: int\n    def _replace(self): ...\n", AttributeError),
        ("    a: int\n    _fields = ()\n", AttributeError),
        ("    _hidden: int\n", ValueError),  # collections.namedtuple's rule for field names
    ],
)
def test_what_typing_refuses_a_record_refuses(body: str, error: type[Exception]) -> None:
    for base in (Record, __import__("typing").NamedTuple):
        with pytest.raises(error):
            exec(f"class Sample(Base):\n{body}", {"Base": base, "__name__": "records_refused"})


def test_a_record_derives_from_record_alone() -> None:
    with pytest.raises(TypeError):
        exec("class Sample(Record, dict):\n    a: int\n", {"Record": Record, "__name__": "records_refused"})


def test_a_nested_record_keeps_its_qualified_name() -> None:
    for base in (Record, __import__("typing").NamedTuple):
        namespace: dict[str, Any] = {"Base": base, "__name__": "records_nested"}
        exec("class Outer:\n    class Inner(Base):\n        a: int\n", namespace)
        assert namespace["Outer"].Inner.__qualname__ == "Outer.Inner"
