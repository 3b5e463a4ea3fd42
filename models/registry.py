"""Name -> constructor tables, so models are built from config words instead of if-chains."""
from __future__ import annotations

from typing import Callable, Dict, List, TypeVar

from errors import UserError

T = TypeVar("T", bound=Callable)


class Registry:
    """A table of constructors registered by name; an unknown name is a `UserError` listing the known."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: Dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} '{name}' is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> Callable:
        if name not in self._items:
            raise UserError(f"unknown {self.what} '{name}'; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> List[str]:
        return sorted(self._items)


BACKBONES = Registry("model.arch")
ATTENTION = Registry("attention type")
