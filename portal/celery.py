import os

from celery import Celery
from celery.signals import worker_init

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
