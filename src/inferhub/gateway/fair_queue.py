"""FairQueue: requests waiting for a saturated model, served fairly across parties (keys or tenants).

Waiters are grouped by priority class (higher first) and, within a class, by party.
Parties take turns (round robin); a party with weight *w* gets *w* turns in a row.
One key flooding the queue therefore cannot starve another: each new slot goes to
the next party in turn, not to the oldest waiter.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from inferhub.backends.base import Backend


@dataclass(eq=False, slots=True)
class Waiter:
    """One queued request. Its future resolves to a backend slot, or to None: "route again"."""

    party: str
    priority: int
    allowed: frozenset[str]
    future: asyncio.Future[Backend | None]
    weight: int = 1
    enqueued_at: float = field(default_factory=time.monotonic)
    candidates: tuple[Backend, ...] = ()  # the backends behind ``allowed``, as they were when it queued


class _Class:
    __slots__ = ("credits", "parties")

    def __init__(self) -> None:
        self.parties: OrderedDict[str, deque[Waiter]] = OrderedDict()
        self.credits: dict[str, int] = {}


class FairQueue:
    def __init__(self) -> None:
        self._classes: dict[int, _Class] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, waiter: Waiter) -> None:
        cls = self._classes.setdefault(waiter.priority, _Class())
        cls.parties.setdefault(waiter.party, deque()).append(waiter)
        self._size += 1

    def remove(self, waiter: Waiter) -> None:
        cls = self._classes.get(waiter.priority)
        if cls is None or waiter.party not in cls.parties:
            return
        waiters = cls.parties[waiter.party]
        try:
            waiters.remove(waiter)
        except ValueError:
            return
        self._size -= 1
        if not waiters:
            del cls.parties[waiter.party]
            cls.credits.pop(waiter.party, None)

    def pop_for(self, backend_id: str) -> Waiter | None:
        """The next waiter, in fair order, that can use this backend."""
        for priority in sorted(self._classes, reverse=True):
            cls = self._classes[priority]
            for party in list(cls.parties):
                waiters = cls.parties[party]
                chosen = next((w for w in waiters if backend_id in w.allowed and not w.future.done()), None)
                if chosen is None:
                    continue
                waiters.remove(chosen)
                self._size -= 1
                credits = cls.credits.get(party, chosen.weight) - 1
                if not waiters:
                    del cls.parties[party]
                    cls.credits.pop(party, None)
                elif credits <= 0:
                    cls.parties.move_to_end(party)  # its turn is over
                    cls.credits.pop(party, None)
                else:
                    cls.credits[party] = credits
                if not cls.parties:
                    del self._classes[priority]
                return chosen
        return None

    def waiters(self) -> list[Waiter]:
        """Every waiter, in no particular order."""
        return [w for cls in self._classes.values() for ws in cls.parties.values() for w in ws]

    def oldest_wait(self) -> float:
        now = time.monotonic()
        oldest = min(
            (w.enqueued_at for cls in self._classes.values() for ws in cls.parties.values() for w in ws), default=now
        )
        return now - oldest
