"""The page a locked-out sign-in gets (django-axes' AXES_LOCKOUT_CALLABLE)."""
from __future__ import annotations

import math

from axes.helpers import get_cool_off, get_failure_limit
from django.shortcuts import render


def lockout_response(request, original_response=None, credentials=None):
    """429, a translated page naming the wait, and Retry-After. Each further wrong
    password during the lock restarts the cool-off, so the wait is the whole of it."""
    cool_off = get_cool_off(request)
    seconds = max(1, math.ceil(cool_off.total_seconds())) if cool_off else None
    context = {"failure_limit": get_failure_limit(request, credentials),
               "minutes": math.ceil(seconds / 60) if seconds else None}
    response = render(request, "portal/lockout.html", context, status=429)
    if seconds:
        response["Retry-After"] = str(seconds)
    return response
