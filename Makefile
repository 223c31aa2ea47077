# Two commands on a fresh machine: `make book` and `make test`. Each makes the virtual
# environment first if there is none (.venv, or $VENV), and installs what it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flatcomp-installed
SMOKE_DIR := $(shell mktemp -d -u /tmp/flatcomp-smoke.XXXXXX)

.PHONY: install book test test-unit test-notebooks test-smoke clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# The HTML site, offline, from the notebooks' committed outputs: _build/html/index.html
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going

# The tiny model trains fastest on one thread per process (two xdist workers on two cores).
# Unit tests, then every chapter re-executed at its default profile from results/ (outputs must
# match exactly), then every chapter trained for real at the smoke profile.
test: test-unit test-notebooks test-smoke

test-unit: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -q

test-notebooks: $(STAMP)
	FLATCOMP_PROFILE=small $(PY) -m pytest -q --nbval --nbval-current-env \
		--nbval-sanitize-with book/sanitize.cfg -p no:randomly book

test-smoke: $(STAMP)
	OMP_NUM_THREADS=1 FLATCOMP_PROFILE=smoke FLATCOMP_RESULTS=$(SMOKE_DIR)/results FLATCOMP_CACHE=$(SMOKE_DIR)/cache \
		$(PY) -m pytest -q --nbval-lax --nbval-current-env -n 2 --dist loadfile book
	rm -rf $(SMOKE_DIR)

clean:
	rm -rf _build
