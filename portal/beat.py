"""One beat at a time.

`celery -A portal beat` runs in its own process (bin/run, docker/compose.yaml).
If two are started — a restart that left the old one running, a second
machine — only the one holding the beat advisory lock (portal.advisory.BEAT)
sends periodic tasks; the other waits as a standby and takes over within a few
seconds of the first one's death (its session, and with it the lock, ends when
its process does). The lock is checked before every send, so a beat that lost
its database connection (and with it the lock) sends nothing until it has the
lock again.

The schedule is kept in memory (no schedule file): every entry is an interval
of a minute or so, and running the sweeps once more after a restart is harmless.
"""
from __future__ import annotations

import logging

from celery.beat import Scheduler

from portal.advisory import BEAT, SessionLock

log = logging.getLogger(__name__)


class SingleBeatScheduler(Scheduler):
    #: seconds a standby waits between two tries of the lock
    standby_interval = 5.0

    def __init__(self, *args, **kwargs):
        self._lock = SessionLock(BEAT, 0)
        self._leading: bool | None = None  # unknown until the first tick
        super().__init__(*args, **kwargs)

    def _lead(self) -> bool:
        try:
            held = self._lock.still_held()
        except Exception as exc:  # the database is away: nobody schedules until it is back
            log.warning("beat: cannot reach the database for the beat lock: %s", exc)
            held = False
        if held != self._leading:
            if held:
                log.warning("beat: holding the beat lock; this beat schedules")
            else:
                log.warning("beat: the beat lock is held elsewhere (or the database is away); standing by")
        self._leading = held
        return held

    def tick(self, *args, **kwargs):
        if not self._lead():
            return self.standby_interval
        return super().tick(*args, **kwargs)

    def close(self):
        self._lock.close()
        super().close()
