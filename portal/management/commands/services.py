"""manage.py services start|stop|status — the embedded PostgreSQL and Redis."""
from django.conf import settings
from django.core.management.base import BaseCommand

from portal import embedded


class Command(BaseCommand):
    help = "Start, stop or show the embedded PostgreSQL + pgvector and Redis broker."
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status"])

    def handle(self, action, **options):
        var = settings.VAR_DIR
        if action == "start":
            embedded.start_configured(settings)
        elif action == "stop":
            if settings.USING_EMBEDDED_BROKER and embedded.stop_redis(var):
                self.stdout.write("embedded Redis stopped")
            if settings.USING_EMBEDDED_DATABASE and embedded.stop_postgres(var):
                self.stdout.write("embedded PostgreSQL stopped")
            return
        for name, state in embedded.status(var).items():
            self.stdout.write(f"{name}: {state}")
