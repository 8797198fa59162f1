VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install lint format clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup --url http://$(HOST):$(PORT)/admin/
	@echo "Leadgen: http://$(HOST):$(PORT)/admin/  (Ctrl-C stops the web server and the workers)"
	@# Ctrl-C reaches the whole process group: qcluster stops on its own SIGINT (a second signal while
	@# it stops can hang it), while daphne, started in the background, ignores SIGINT and needs a TERM.
	@trap 'kill -TERM $$web 2>/dev/null; wait' INT; \
	trap 'kill -TERM $$web $$workers 2>/dev/null; wait' TERM; \
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) leadgen.asgi:application & web=$$!; \
	$(PY) manage.py qcluster & workers=$$!; \
	wait

test: install
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) staticfiles htmlcov .coverage .pytest_cache
