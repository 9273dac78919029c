"""Database engine for the embedded PostgreSQL (settings.py selects it only when
DATABASE_URL is unset): the stock PostgreSQL backend that finds the server's
socket when it connects, and says clearly when the server is stopped."""
