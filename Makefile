# Two commands on a fresh machine: `make book` and `make test`. Each makes the virtual
# environment first if there is none (.venv, or $VENV), and installs what it needs: `make book`
# only the book's builder (requirements-book.txt), `make test` everything (requirements.txt).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.flatcomp-installed
BOOK_STAMP := $(VENV)/.flatcomp-book-installed
SMOKE_DIR := $(shell mktemp -d -u /tmp/flatcomp-smoke.XXXXXX)

# The installer: uv where it can be had (on PATH, as `python3 -m uv`, or fetched from PyPI into
# the venv), seconds where pip takes minutes; plain pip when there is no uv. uv reads no pip
# config, so the folders in PIP_FIND_LINKS (say a local CPU torch wheel) are passed on to it.
UV_LINKS := $(foreach d,$(PIP_FIND_LINKS),--find-links $(d))
PIP := --disable-pip-version-check
define venv_installer
set -e; \
if command -v uv >/dev/null 2>&1; then uv=uv; \
elif python3 -m uv --version >/dev/null 2>&1; then uv="python3 -m uv"; else uv=; fi; \
if [ -x $(PY) ]; then :; \
elif [ -n "$$uv" ]; then $$uv venv -q --seed --python python3 $(VENV); \
else python3 -m venv $(VENV); fi; \
if [ -z "$$uv" ] && { [ -x $(VENV)/bin/uv ] || \
	$(PY) -m pip install -q $(PIP) --only-binary :all: uv; }; then uv=$(VENV)/bin/uv; fi; \
if [ -n "$$uv" ]; then install="$$uv pip install -q --python $(PY) $(UV_LINKS)"; \
else echo "no uv to be had: installing with pip (minutes)"; install="$(PY) -m pip install -q $(PIP)"; fi
endef

.PHONY: install book test test-unit test-notebooks test-smoke clean

# Bytecode is compiled at install (UV_COMPILE_BYTECODE; pip compiles anyway): where
# PYTHONDONTWRITEBYTECODE is set, as on our machines, every process would otherwise compile torch
# and transformers again on import, about 15 CPU-seconds of each of the test run's many starts.
$(STAMP): requirements.txt requirements-book.txt pyproject.toml
	@$(venv_installer); set -x; \
	UV_COMPILE_BYTECODE=1 $$install -r requirements.txt; \
	$$install --no-deps -e .
	touch $(STAMP) $(BOOK_STAMP)

$(BOOK_STAMP): requirements-book.txt
	@$(venv_installer); set -x; \
	$$install -r requirements-book.txt
	touch $(BOOK_STAMP)

install: $(STAMP)

# The HTML site, offline, from the notebooks' committed outputs: _build/html/index.html. Math
# renders offline too: MathJax's files (the jupyter-server-mathjax wheel's) are copied into
# _offline, which Sphinx copies into the site's _static (not into _static itself: Jupyter Book
# would add a script tag for every .js file there).
book: $(BOOK_STAMP)
	$(PY) -c "import jupyter_server_mathjax as m, pathlib, shutil; \
	shutil.copytree(pathlib.Path(m.__file__).parent / 'static', '_offline/mathjax', dirs_exist_ok=True)"
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going

# The tiny model trains fastest on one thread per process (two xdist workers on two cores).
# Unit tests first; then, side by side (each leaves a core idle at times, and the other fills
# it), every chapter re-executed at its default profile from results/ (outputs must match
# exactly), and the smoke pass.
test: test-unit
	$(MAKE) --no-print-directory -j2 --output-sync=target test-notebooks test-smoke

test-unit: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -q -n 2 --dist loadfile

test-notebooks: $(STAMP)
	OMP_NUM_THREADS=1 FLATCOMP_PROFILE=small $(PY) -m pytest -q --nbval --nbval-current-env \
		--nbval-sanitize-with book/sanitize.cfg -p no:randomly -n 2 --dist loadfile book

# The smoke pass: the SQuAD chapter computing its own units, as on Colab (one kernel); the rest of
# the plan of every chapter trained for real on the tiny model (two local workers), then checked
# to have nothing left to compute; then every chapter run on its results, and the stored units'
# records and checkpoints checked (tests/smoke_units.py), beside each other.
SMOKE_ENV := OMP_NUM_THREADS=1 FLATCOMP_PROFILE=smoke FLATCOMP_RESULTS=$(SMOKE_DIR)/results \
	FLATCOMP_CACHE=$(SMOKE_DIR)/cache
test-smoke: $(STAMP)
	$(SMOKE_ENV) $(PY) -m pytest -q --noconftest -p no:randomly tests/smoke_squad_chapter.py
	$(SMOKE_ENV) $(PY) -m flatcomp plan --executor local --workers 2 --threads 1 \
		--logs $(SMOKE_DIR)/logs
	$(SMOKE_ENV) $(PY) -m pytest -q --noconftest -p no:randomly -n 2 tests/smoke_chapters.py \
		tests/smoke_units.py
	rm -rf $(SMOKE_DIR)

clean:
	rm -rf _build
