"""What every Celery task of the portal does when the database or the broker is away.

`is_transient(exc)` tells an outage (a lost or refused connection, a restart, a
deadlock) from a bug. `retry_later` retries with exponential backoff capped at
PORTAL_TASK_RETRY_MAX_DELAY, at most PORTAL_TASK_MAX_RETRIES times (about 13
minutes with the defaults), and never touches the database itself — so it works
while the database is down. When the broker is down too, Celery cannot send the
retry and drops the message; the work is not lost: the recovery sweeps find it
from the database once both are back. `send` queues a task without ever
raising: a caller that has just committed work must not answer 500 because the
broker is away.
"""
from __future__ import annotations

import logging
import random

from django.conf import settings
from django.db import InterfaceError, OperationalError

log = logging.getLogger(__name__)


def _transient_types() -> tuple[type[BaseException], ...]:
    import kombu.exceptions
    import psycopg

    types = [OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError,
             kombu.exceptions.OperationalError, ConnectionError, TimeoutError]
    try:
        import redis.exceptions

        types += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError]
    except ImportError:  # pragma: no cover - the broker is not Redis
        pass
    return tuple(types)


TRANSIENT = _transient_types()


def is_transient(exc: BaseException) -> bool:
    """An outage rather than a bug: worth retrying later, not a reason to fail a document."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, TRANSIENT):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def backoff(retries: int) -> float:
    """Seconds before retry number `retries` + 1: 1, 2, 4, … capped, with ±20% jitter so
    tasks that failed together do not all come back in the same second."""
    delay = min(settings.TASK_RETRY_MAX_DELAY, 2 ** min(retries, 20))
    return round(delay * random.uniform(0.8, 1.2), 2)


def retry_later(task, exc: BaseException, **options) -> str:
    """Raise the task's retry (never returns) — or, after the last retry, log and return
    "gave up" so the message is acknowledged; the recovery sweep queues the work again."""
    retries = task.request.retries
    if retries >= settings.TASK_MAX_RETRIES:
        log.error("%s%s: giving up after %d retries (%s: %s); the recovery sweep will queue it again",
                  task.name, tuple(task.request.args or ()), retries, exc.__class__.__name__, exc)
        return "gave up"
    countdown = backoff(retries)
    log.warning("%s%s: %s: %s; retry %d in %.1f s", task.name, tuple(task.request.args or ()),
                exc.__class__.__name__, exc, retries + 1, countdown)
    raise task.retry(exc=exc, countdown=countdown, max_retries=settings.TASK_MAX_RETRIES, **options)


def send(task, *args, **kwargs) -> bool:
    """Queue `task(*args, **kwargs)`; False (logged) when the broker cannot be reached."""
    return _send(task, args, kwargs)


def send_later(task, countdown: float, *args, **kwargs) -> bool:
    return _send(task, args, kwargs, countdown=countdown)


def _send(task, args, kwargs, **options) -> bool:
    try:
        task.apply_async(args, kwargs, retry_policy=PUBLISH_RETRY_POLICY, **options)
        return True
    except Exception as exc:  # the broker is away (kombu wraps redis/amqp errors in several ways)
        log.warning("could not queue %s%s: %s: %s", task.name, args, exc.__class__.__name__, exc)
        return False


# Publishing to a broker that is down: try three times within about a second, then give up
# (the caller records that the work is not queued). Celery's default is similar; stated here
# because a web request waits for it.
PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.3, "interval_max": 0.5}


def consumes(queue: str) -> bool:
    """Whether this worker takes tasks from `queue` (its -Q, or every queue without one)."""
    from portal.celery import app

    return queue in app.amqp.queues.consume_from


def queue_length(name: str) -> int | None:
    """Messages waiting in a queue (not counting those a worker holds); None when the
    broker cannot be asked."""
    from kombu.exceptions import ChannelError

    from portal.celery import app

    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)  # not Celery's 100 retries: the sweep must not hang
            try:
                return conn.default_channel.queue_declare(queue=name, passive=True).message_count
            except ChannelError:  # no such queue (Redis drops an empty list): nothing waits
                return 0
    except Exception as exc:  # the broker is away
        log.warning("could not read the length of queue %s: %s", name, exc)
        return None
