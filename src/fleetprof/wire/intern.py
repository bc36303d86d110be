"""Canonical frame and stack objects shared by every decoded request: one object per distinct content.

The store recognizes a stack object it has seen before by identity (fleetprof.store.rows.IdCache), so a
stack that recurs across requests costs it a dict lookup instead of hashing its frames again; decoding
itself builds fewer objects. Each table is bounded (cleared whole when full: objects are then merely not
shared with earlier requests) and safe to use from several threads (single dict operations under the GIL;
a race at worst makes two equal objects). Sharing rests on the model's rule that a Frame is a value,
never assigned to (fleetprof.profile.model.Frame).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable

from fleetprof.profile.model import Frame, FrameKind, Mapping

Stack = tuple[Frame, ...]


def mapping_content(mapping: Mapping | None) -> tuple[object, ...] | None:
    """Every field of a mapping, as a plain tuple (hashes and compares in C)."""
    if mapping is None:
        return None
    return (mapping.file_id, mapping.path, mapping.build_id, mapping.start, mapping.limit, mapping.offset)


def frame_content(frame: Frame) -> tuple[object, ...]:
    """Every field of a frame (its mapping's too), as a plain tuple: equal tuples mean equal frames."""
    return (
        int(frame.kind),
        frame.function,
        frame.file,
        frame.line,
        mapping_content(frame.mapping),
        frame.address,
        frame.inlined,
        frame.start_line,
        frame.system_name,
        frame.runtime,
    )


class Interner:
    """Bounded tables of canonical frames (by content), stacks (by the identities of canonical frames,
    whose objects each entry holds, so those identities stay unique) and process root frames (by name)."""

    def __init__(self, frame_limit: int = 500_000, stack_limit: int = 200_000) -> None:
        """Tables are cleared whole when they pass their limit."""
        self.frame_limit = frame_limit
        self.stack_limit = stack_limit
        self._frames: dict[tuple[object, ...], Frame] = {}
        self._stacks: dict[tuple[int, ...], Stack] = {}
        self._roots: dict[str, Frame] = {}
        self._locations: dict[tuple[object, ...], Stack] = {}
        self._numbers: dict[Hashable, int] = {}
        self._next_number = itertools.count(1)
        self._memos: dict[str, dict[Hashable, object]] = {}

    def frame(self, frame: Frame) -> Frame:
        """The canonical object equal to `frame`."""
        frames = self._frames
        key = frame_content(frame)
        found = frames.get(key)
        if found is None:
            if len(frames) >= self.frame_limit:
                frames.clear()
            found = frames.setdefault(key, frame)
        return found

    def frames(self, frames: Stack) -> Stack:
        """`frames` with each frame made canonical."""
        return tuple(map(self.frame, frames))

    def location(self, key: tuple[object, ...], build: Callable[[], Stack]) -> Stack:
        """The canonical frames of a location whose content is `key` (what the decoder makes its frames
        from: frame type, mapping fields, address, lines), calling `build` only the first time."""
        locations = self._locations
        found = locations.get(key)
        if found is None:
            if len(locations) >= self.frame_limit:
                locations.clear()
            found = locations.setdefault(key, self.frames(build()))
        return found

    def root(self, name: str) -> Frame:
        """The canonical PROCESS frame named `name`."""
        found = self._roots.get(name)
        if found is None:
            if len(self._roots) >= self.frame_limit:
                self._roots.clear()
            found = self._roots.setdefault(name, Frame(FrameKind.PROCESS, name))
        return found

    def stack(self, frames: Stack) -> Stack:
        """The canonical tuple of canonical frames `frames` (each already from `frame` or `root`)."""
        stacks = self._stacks
        key = tuple(map(id, frames))
        found = stacks.get(key)
        if found is None:
            if len(stacks) >= self.stack_limit:
                stacks.clear()
            found = stacks.setdefault(key, frames)
        return found

    def number(self, content: Hashable) -> int:
        """A number standing for `content` in keys (fleetprof.wire.otlp_columns builds its keys of them):
        one per content, and never given to other content (numbers are not reused after a clear)."""
        numbers = self._numbers
        found = numbers.get(content)
        if found is None:
            if len(numbers) >= self.frame_limit:
                numbers.clear()
            found = numbers.setdefault(content, next(self._next_number))
        return found

    def fresh(self) -> int:
        """A number never given before (to content or by `fresh`)."""
        return next(self._next_number)

    def memo(self, name: str) -> dict[Hashable, object]:
        """Bounded table `name` of fleetprof.wire.otlp_columns (keys made of `number`s; see `remember`)."""
        return self._memos.setdefault(name, {})

    def remember(self, name: str, key: Hashable, value: object) -> object:
        """Put `value` under `key` in table `name` (cleared whole when full); the value now held."""
        table = self.memo(name)
        if len(table) >= self.frame_limit:
            table.clear()
        return table.setdefault(key, value)

    def __len__(self) -> int:
        """Canonical stacks held."""
        return len(self._stacks)


SHARED = Interner()  # the process's tables: what every request decoded here shares
