import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

# Query encoding in web processes: one torch thread each (see search/services/encoders.py).
from django.conf import settings  # noqa: E402

from search.services.encoders import use_query_threads  # noqa: E402

use_query_threads(settings.QUERY_TORCH_THREADS)

if settings.WARM_UP_MODELS:
    import threading

    def _warm_up() -> None:
        from django.db import connections

        try:
            from search.services.encoders import warm_up
            from search.services.spaces import searched_spaces

            warm_up(searched_spaces())
        except Exception:  # a fresh database, a missing model: the first search reports it
            import logging

            logging.getLogger("search").warning("model warm-up failed", exc_info=True)
        finally:
            connections.close_all()

    threading.Thread(target=_warm_up, name="model-warm-up", daemon=True).start()
