from django.contrib import admin

from answers.models import AnswerLog


@admin.register(AnswerLog)
class AnswerLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "question", "kind", "notice", "space", "user", "latency_ms", "via")
    list_filter = ("kind", "notice", "space", "via")
    search_fields = ("question",)
    readonly_fields = [f.name for f in AnswerLog._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_module_permission(self, request):
        # answers quote passages of every level, whoever asked: superusers only (like the search log)
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


from answers import prompt_admin  # noqa: E402,F401 - registers the prompt templates' admin
