import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

# Query encoding in web processes: one torch thread each (see search/services/encoders.py).
from django.conf import settings  # noqa: E402

from search.services.encoders import use_query_threads  # noqa: E402

use_query_threads(settings.QUERY_TORCH_THREADS)
