"""`ENGINE: "portal.db"`: django.db.backends.postgresql, plus one step before each
new connection: look up the embedded server under `EMBEDDED_VAR_DIR` (a read of
its postmaster.pid). It never starts the server: services are started
explicitly (manage.py services start, bin/run, bin/test), so a server stopped on
purpose — by an operator or a fault test — stays stopped, and nothing is left
running that nobody owns. A stopped server raises `EmbeddedDatabaseNotRunning`,
an OperationalError (the same handling as any outage) whose message names the
command that starts it."""
from __future__ import annotations

from pathlib import Path

from django.db.backends.postgresql import base
from django.db.utils import OperationalError

from portal import embedded


class EmbeddedDatabaseNotRunning(embedded.ServiceNotRunning, OperationalError):
    pass


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        var_dir = Path(self.settings_dict["EMBEDDED_VAR_DIR"])
        try:
            params["host"] = str(embedded.running_postgres_socket_dir(var_dir))
        except embedded.ServiceNotRunning as exc:
            raise EmbeddedDatabaseNotRunning(str(exc)) from None
        return params
