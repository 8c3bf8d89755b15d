# make run · make test · make bench — each installs what it needs first.
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PG_BIN  := /usr/lib/postgresql/15/bin
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench system-deps bytecode

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The editable install gets no bytecode of its own, and a stale .pyc costs every `flask`
# command its compile time; compileall only rewrites what changed.
bytecode: $(STAMP)
	@$(PYTHON) -m compileall -q backup_app devtools bench app.py

# From Debian: PostgreSQL 15 server and client (pg_dump, pg_restore, psql, initdb), and the
# Redis server the scale-out test starts, and the Chromium that the browser tests drive
# (`playwright install` cannot download browsers here).
system-deps:
	@if [ ! -x $(PG_BIN)/initdb ] || [ ! -x $(PG_BIN)/pg_dump ]; then \
		$(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q postgresql-15 postgresql-client-15; \
	fi
	@if [ ! -x /usr/bin/redis-server ]; then \
		$(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q redis-server; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
		$(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q chromium; \
	fi

run: system-deps bytecode
	$(PYTHON) -m devtools.demo

test: system-deps bytecode
	$(PYTHON) -m pytest

bench: system-deps bytecode
	$(PYTHON) -m bench
	$(PYTHON) -m bench.pitr
