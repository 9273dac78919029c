from django import template
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def get_item(mapping, key):
    return (mapping or {}).get(key)


@register.filter
def passage_label(chunk) -> str:
    """How a link to a passage reads: its heading, else its position ("Đoạn 3")."""
    if chunk.heading_path:
        return chunk.heading_path[-1]
    return _("Đoạn %(n)d") % {"n": chunk.ordinal + 1}
