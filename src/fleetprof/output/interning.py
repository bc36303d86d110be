"""Dense index tables (string tables, dictionaries) shared by the formats that need them."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Interner(Generic[K]):
    """Maps keys to consecutive indexes in first-seen order; `keys[i]` is the key of index i."""

    __slots__ = ("_index", "keys")

    def __init__(self, *preset: K) -> None:
        self._index: dict[K, int] = {}
        self.keys: list[K] = []
        for key in preset:
            self.add(key)

    def add(self, key: K) -> int:
        """Index of `key`, appending it when new."""
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.keys)
            self.keys.append(key)
        return index

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index


def utf8_safe(text: str) -> str:
    """`text` with lone surrogates (undecodable bytes) replaced, so protobuf and UTF-8 encoders accept it."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode(errors="replace").decode()
    return text


class StringTable(Interner[str]):
    """A string table whose entry 0 is "", as pprof and OTLP require; stores only valid UTF-8."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("")

    def add(self, key: str) -> int:
        """Index of `key` (made UTF-8 safe), appending it when new."""
        index = self._index.get(key)
        if index is None:
            index = super().add(utf8_safe(key))
            self._index[key] = index
        return index
