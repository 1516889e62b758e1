"""Console sessions: server-side, bounded, expiring; a logout forgets the session for good.

Why server-side and not a signed cookie: a logout (or a stolen laptop's cookie) must stop
working on the server at once, and a signed cookie stays valid until it expires.  Two pools,
because a visitor who has not logged in (the login form needs a CSRF token too) must never be
able to push a logged-in session out of the bound by opening the login page in a loop.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "sinkhole_session"
AUTHED_MAX = 256
ANON_MAX = 1024
AUTHED_TTL = 12 * 3600.0      # absolute: a login lasts a working day
AUTHED_IDLE = 2 * 3600.0      # and ends sooner when left alone
ANON_TTL = 15 * 60.0          # a login form must be used within this


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    authed: bool
    created: float
    seen: float
    flash: list[str] = field(default_factory=list)


class Sessions:
    """Sessions by id; the oldest of a full pool is evicted (LRU by last use)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._pools: dict[bool, OrderedDict[str, Session]] = {True: OrderedDict(),
                                                              False: OrderedDict()}

    def create(self, authed: bool) -> Session:
        now = self.clock()
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), authed, now, now)
        pool = self._pools[authed]
        pool[s.id] = s
        while len(pool) > (AUTHED_MAX if authed else ANON_MAX):
            pool.popitem(last=False)
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id, or None (unknown, expired or logged out)."""
        if not sid:
            return None
        for authed, pool in self._pools.items():
            s = pool.get(sid)
            if s is None:
                continue
            now = self.clock()
            if self._expired(s, now):
                del pool[sid]
                return None
            s.seen = now
            pool.move_to_end(sid)
            return s if s.authed == authed else None
        return None

    def drop(self, sid: str | None) -> None:
        for pool in self._pools.values():
            pool.pop(sid or "", None)

    def __len__(self) -> int:
        return sum(len(p) for p in self._pools.values())

    @staticmethod
    def _expired(s: Session, now: float) -> bool:
        if not s.authed:
            return now - s.created > ANON_TTL
        return now - s.created > AUTHED_TTL or now - s.seen > AUTHED_IDLE


def same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a token from a form with the one we issued."""
    return hmac.compare_digest((given or "").encode(), expected.encode())
