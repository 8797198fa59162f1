VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint format clean db-stop db-reset

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

# Without DATABASE_URL, `run` and `test` hold the embedded PostgreSQL server (.pgdata/) while they run:
# the first one starts it, a second one reuses it, and the last one to end stops it. A server started
# otherwise (a bare manage.py or pytest) is left running: `make db-stop`.
HOLD = hold() { [ -n "$$DATABASE_URL" ] || $(PY) -m leadgen.embedded_db "$$@"; }

# Ctrl-C reaches the whole process group: qcluster stops on its own SIGINT (a second signal while it
# stops can hang it), while daphne, started in the background, ignores SIGINT and needs a TERM. The
# PostgreSQL server runs in a session of its own: `hold release` stops it once both have ended (the
# traps come first, so that a Ctrl-C while the server starts still releases it).
# The local demo: debug mode (unless DEBUG is set), in which the settings sign with this checkout's own
# random key (.dev-secret-key, made on first use) when SECRET_KEY is not set.
run: export DEBUG ?= 1

run: install
	@$(HOLD); \
	trap 'kill -TERM $$web 2>/dev/null; wait' INT; \
	trap 'kill -TERM $$web $$workers 2>/dev/null; wait' TERM; \
	hold start --holder $$$$ && \
	$(PY) manage.py migrate --noinput && \
	$(PY) manage.py demo_setup --url http://$(HOST):$(PORT)/admin/ && \
	echo "Leadgen: http://$(HOST):$(PORT)/admin/  (Ctrl-C stops the web server and the workers)" && { \
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) leadgen.asgi:application & web=$$!; \
	$(PY) manage.py qcluster & workers=$$!; \
	wait; }; \
	status=$$?; hold release $$$$; exit $$status

test: install
	@$(HOLD); trap : INT; \
	hold start --holder $$$$ && $(VENV)/bin/pytest; \
	status=$$?; hold release $$$$; exit $$status

db-stop: install
	$(PY) -m leadgen.embedded_db stop

db-reset: install
	$(PY) -m leadgen.embedded_db reset

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) staticfiles htmlcov .coverage .pytest_cache
