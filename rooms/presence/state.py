"""The replicated state: who is present in which topic, as this process knows it.

Every process keeps the entries of every process: ``topic → key → ref → meta``, with an
index by owner (the node uid of the process that tracked the entry) so that a process that
goes away, or sends its full state again, is dealt with in O(its entries). Nothing here waits
or sends; each change returns what it changed, for the diffs.

Memory follows entries: a key with no entry, a topic with no key and an owner with no entry
are forgotten at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from rooms.presence.bounds import REF, Listing, Meta, Metas

Where = tuple[str, str]
"""(topic, key) of an entry."""


class State:
    """Every entry this process knows of, its own and the other processes'."""

    __slots__ = ("owners", "topics")

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, dict[str, Meta]]] = {}
        self.owners: dict[str, dict[str, Where]] = {}  # owner uid → ref → (topic, key)

    def __len__(self) -> int:
        return sum(len(refs) for refs in self.owners.values())

    # ------------------------------------------------------------------ reading

    def list(self, topic: str) -> Listing:
        """``{key: [meta, ...]}`` for ``topic`` (new dicts and lists, the metas shared)."""
        keys = self.topics.get(topic)
        if keys is None:
            return {}
        return {key: list(refs.values()) for key, refs in keys.items()}

    def count(self, topic: str) -> int:
        """How many keys ``topic`` has."""
        return len(self.topics.get(topic, ()))

    def get(self, topic: str, key: str) -> Metas:
        refs = self.topics.get(topic, {}).get(key)
        return [] if refs is None else list(refs.values())

    def owned(self, owner: str) -> dict[str, Where]:
        """The refs of ``owner``'s entries, with where each is (a copy)."""
        return dict(self.owners.get(owner, {}))

    def entries(self, owner: str) -> Iterator[tuple[str, str, Meta]]:
        """``(topic, key, meta)`` for each of ``owner``'s entries."""
        topics = self.topics
        for ref, (topic, key) in self.owners.get(owner, {}).items():
            yield topic, key, topics[topic][key][ref]

    def meta(self, owner: str, ref: str) -> tuple[str, str, Meta] | None:
        where = self.owners.get(owner, {}).get(ref)
        if where is None:
            return None
        topic, key = where
        return topic, key, self.topics[topic][key][ref]

    # ------------------------------------------------------------------ changing

    def join(self, owner: str, topic: str, key: str, meta: Meta) -> bool:
        """Add ``owner``'s entry ``meta`` (which carries its ref). False if that ref is
        already another owner's in that place (refs are random: only a confused peer
        repeats one), or already this owner's: nothing changed."""
        ref = meta[REF]
        refs = self.topics.setdefault(topic, {}).setdefault(key, {})
        if ref in refs:
            return False
        mine = self.owners.setdefault(owner, {})
        if ref in mine:  # the same ref elsewhere: a confused peer; keep the first
            self._prune(topic, key)
            return False
        refs[ref] = meta
        mine[ref] = (topic, key)
        return True

    def leave(self, owner: str, ref: str) -> tuple[str, str, Meta] | None:
        """Remove ``owner``'s entry ``ref``; ``(topic, key, meta)`` it had, or None."""
        mine = self.owners.get(owner)
        if mine is None:
            return None
        where = mine.pop(ref, None)
        if where is None:
            return None
        if not mine:
            del self.owners[owner]
        topic, key = where
        meta = self.topics[topic][key].pop(ref)
        self._prune(topic, key)
        return topic, key, meta

    def _prune(self, topic: str, key: str) -> None:
        keys = self.topics[topic]
        if not keys[key]:
            del keys[key]
            if not keys:
                del self.topics[topic]
