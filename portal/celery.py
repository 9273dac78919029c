import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, celeryd_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Queues, routes, time limits and the beat schedule: the Celery section of portal/settings.py.


@worker_init.connect
def _check_configuration(**kwargs):
    """A worker with a bad configuration refuses to start, like runserver does."""
    import django
    from django.core import checks

    django.setup()
    serious = [e for e in checks.run_checks() if e.is_serious()]
    if serious:
        raise SystemExit("configuration errors:\n" + "\n".join(str(e) for e in serious))


@celeryd_init.connect
def _quiet_worker(**kwargs):
    """No model-loading progress bars in the worker log (Celery logs stderr at WARNING)."""
    from portal.runtime_output import quiet_progress_bars

    quiet_progress_bars()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _utc_log_times(logger=None, **kwargs):
    """The same UTC time format as the web processes (portal/runtime_output.py)."""
    from portal.runtime_output import use_utc_times

    use_utc_times(logger)
