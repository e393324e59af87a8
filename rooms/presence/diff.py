"""A topic's changes over one batch window: what its subscribers and hooks hear next.

Joins and leaves are kept by ref, so a join and a leave of one entry within the window
cancel out (nobody was told of it, so nobody is told it went), and a leave then a join of
one ref (a process sent its state again) is kept as both: clients apply the leaves first.

A subscriber that arrives within the window is sent the state as the others know it (the
state now, with this window's changes undone: :meth:`Diff.before`), so the next diff brings
it up to date exactly as it does everyone else.
"""

from __future__ import annotations

from typing import Any

from rooms.presence.bounds import REF, Listing, Meta

Entries = dict[str, tuple[str, Meta]]
"""ref → (key, meta)."""


class Diff:
    __slots__ = ("joins", "leaves")

    def __init__(self) -> None:
        self.joins: Entries = {}
        self.leaves: Entries = {}

    def __bool__(self) -> bool:
        return bool(self.joins or self.leaves)

    def joined(self, key: str, meta: Meta) -> None:
        self.joins[meta[REF]] = (key, meta)

    def left(self, key: str, meta: Meta) -> None:
        ref = meta[REF]
        if self.joins.pop(ref, None) is None:
            self.leaves[ref] = (key, meta)

    def before(self, now: Listing) -> Listing:
        """``now`` (a topic's ``{key: [meta]}``, changed in place) as it was when this
        window began."""
        for ref, (key, _) in self.joins.items():
            metas = now.get(key)
            if metas is not None:
                metas[:] = [meta for meta in metas if meta[REF] != ref]
                if not metas:
                    del now[key]
        for key, meta in self.leaves.values():
            now.setdefault(key, []).append(meta)
        return now

    def payload(self, topic: str) -> dict[str, Any]:
        """The ``presence_diff`` event's argument."""
        return {"topic": topic, "joins": _by_key(self.joins), "leaves": _by_key(self.leaves)}


def _by_key(entries: Entries) -> Listing:
    grouped: Listing = {}
    for key, meta in entries.values():
        grouped.setdefault(key, []).append(meta)
    return grouped
