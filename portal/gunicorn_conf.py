"""gunicorn settings shared by bin/run and the Docker image
(`gunicorn -c python:portal.gunicorn_conf portal.wsgi`): the master and its
workers log with one formatter, in UTC with an explicit offset (see
portal/runtime_output.py), and no progress bars when models load."""
from portal.runtime_output import quiet_progress_bars

quiet_progress_bars()  # the master's environment is inherited by every worker

# gunicorn ≥ 25 opens a control socket at one path per user ($HOME/.gunicorn):
# two portals (or a portal and the test suite) on one machine would share it.
control_socket_disable = True

# The time comes from the formatter (UTC), not from %(t)s (the process's local zone).
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "utc": {"()": "portal.runtime_output.UTCFormatter",
                "format": "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "utc", "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "utc", "stream": "ext://sys.stdout"},
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
}
