"""manage.py create_demo_users — accounts for trying the portal (idempotent).

Only for local demos: the passwords are printed. Never run it in production.
"""
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

from documents.models import Department
from portal.models import Clearance, User

DEMO_PASSWORD = "demo-portal-2024"

# username, departments, clearance, uploader
DEMO_USERS = [
    ("lan.hr", ["HR"], Clearance.DEPARTMENT, True),
    ("minh.it", ["IT"], Clearance.DEPARTMENT, True),
    ("ha.finance", ["FIN"], Clearance.DEPARTMENT, False),
    ("tuan.ops", ["OPS"], Clearance.DEPARTMENT, False),
    ("director", [], Clearance.EXECUTIVE, False),
    ("intern", ["IT"], Clearance.INTERNAL, False),
]


class Command(BaseCommand):
    help = "Create demo accounts (admin + employees of several departments)."

    def handle(self, **options):
        uploaders, _ = Group.objects.get_or_create(name="Uploaders")
        uploaders.permissions.add(Permission.objects.get(codename="add_document", content_type__app_label="documents"))
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", DEMO_PASSWORD)
        for username, depts, clearance, uploader in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username, defaults={"clearance": clearance})
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            for code in depts:
                dept, _ = Department.objects.get_or_create(code=code, defaults={"name": code})
                user.departments.add(dept)
            if uploader:
                user.groups.add(uploaders)
        names = ", ".join(["admin"] + [u[0] for u in DEMO_USERS])
        self.stdout.write(f"demo accounts: {names} (password: {DEMO_PASSWORD})")
