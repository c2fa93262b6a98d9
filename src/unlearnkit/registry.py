"""``Registry``: one name -> entry table type for methods, models and data sources.

A registry is a ``dict`` (so iteration order, ``in``, ``values()`` and ``items()`` work as usual) that refuses
a second entry under a taken name and answers an unknown name with the one-line :class:`ConfigError` every
user-facing lookup gives: the kind of thing, the name asked for, the names there are, and where to list them.

    >>> from unlearnkit.registry import Registry
    >>> colours = Registry("colour", listing="unlearn colours")
    >>> colours.add("red", 1)
    1
    >>> colours.get("blue")
    Traceback (most recent call last):
    ...
    unlearnkit.errors.ConfigError: unknown colour 'blue'; choose one of: red (`unlearn colours`)
"""

from __future__ import annotations

from typing import Generic, TypeVar

from unlearnkit.errors import ConfigError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """Entries by name; ``kind`` names them in messages, ``listing`` is the command that lists them."""

    def __init__(self, kind: str, listing: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.listing = listing

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; a taken name is a programming error (ValueError), not a user's."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered (by {self[name]!r})")
        self[name] = entry
        return entry

    def get(self, name: str) -> T:  # type: ignore[override]
        """The entry under ``name``, or a ConfigError naming the choices."""
        if name not in self:
            hint = f" (`{self.listing}`)" if self.listing else ""
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self))}{hint}")
        return self[name]
