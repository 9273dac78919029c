from django.conf import settings


def test_tests_use_their_own_embedded_services(db):
    from django.db import connection

    assert str(settings.VAR_DIR).endswith("var/test")
    with connection.cursor() as cur:
        cur.execute("select current_database(), version()")
        name, version = cur.fetchone()
    assert name == "test_portal"
    assert "PostgreSQL 18" in version
