"""``Record``: ``typing.NamedTuple`` without its cost at start-up.

typing.NamedTuple checks every field's annotation when it creates the class; with ``from __future__ import
annotations`` (which the core needs for the Python 3.8 hosts it is shipped to) each annotation is a string that it
compiles into a ForwardRef. tcptune defines some forty records on the path of every command, and that checking was
about 6% of a short command's CPU time (bench/diff_latency). Type checkers see typing.NamedTuple itself; at run time
a ``class X(Record)`` is the same collections.namedtuple typing.NamedTuple makes (fields, defaults, methods,
docstring, ``__annotations__`` as written), only without the checks nobody reads.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import NamedTuple as Record
else:
    # typing.NamedTupleMeta's rules: these names are the namedtuple's own, the first three are set by it.
    _SET_BY_NAMEDTUPLE = frozenset({"__module__", "__name__", "__annotations__"})
    _PROHIBITED = frozenset(
        {"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults", "_make", "_replace"}
        | {"_asdict", "_source"}
    )

    class _RecordMeta(type):
        def __new__(mcs, typename: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> Any:
            if bases != (Record,):
                raise TypeError(f"{typename}: a record derives from Record alone")
            fields = namespace.get("__annotations__", {})
            defaults = []
            for field in fields:
                if field in namespace:
                    defaults.append(namespace[field])
                elif defaults:
                    raise TypeError(f"{typename}: field {field} without a default follows a field with one")
            record = collections.namedtuple(typename, list(fields), defaults=defaults, module=namespace["__module__"])
            record.__annotations__ = dict(fields)
            for name, value in namespace.items():
                if name in _PROHIBITED:
                    raise AttributeError(f"{typename}: cannot overwrite the record attribute {name}")
                if name not in _SET_BY_NAMEDTUPLE and name not in fields:
                    setattr(record, name, value)
            return record

    Record = type.__new__(_RecordMeta, "Record", (), {"__module__": __name__, "__qualname__": "Record"})

__all__ = ["Record"]
