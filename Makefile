# napari-microstructure: set-up and checks for a fresh machine.
#   make demo   install, train on the bundled sample data, write demo-output/
#   make test   install the test extras (and, as root, Xvfb/Qt system packages), run the suite
#   make lock         re-resolve every dependency (torch pin only) into constraints.txt, run the suite
#   make test-latest  run the suite in .venv-latest against the newest releases (torch pin only)
# make test and make demo install exactly the versions in constraints.txt (the lock).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
CONSTRAINTS := -c constraints.txt
# the one pin that is not a lock: an unpinned torch pulls several GB of CUDA packages
TORCH_PIN := torch==2.13.0
LOCK_VENV ?= .venv-lock
LATEST_VENV ?= .venv-latest
# extras installed for the lock and for test-latest (every optional feature the suite tests)
LOCK_EXTRAS ?= all,testing
APT_PACKAGES := xvfb xauth libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 \
	libxkbcommon-x11-0 libx11-xcb1 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
	libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 libxcb-xfixes0 libxcb-cursor0
PYTEST_ARGS ?=

.PHONY: demo test install install-test system-deps bench validate clean lock test-latest

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, from the pin, so that nothing resolves an unpinned (CUDA) build
$(VENV)/.installed-all: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q $(CONSTRAINTS) torch
	$(PIP) install -q $(CONSTRAINTS) -e ".[all]"
	touch $@

$(VENV)/.installed-testing: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q $(CONSTRAINTS) torch
	$(PIP) install -q $(CONSTRAINTS) -e ".[testing]"
	touch $@

install: $(VENV)/.installed-all

install-test: $(VENV)/.installed-testing

# Debian packages that Xvfb and Qt need; installed only when running as root and missing
system-deps:
	@if ! command -v xvfb-run >/dev/null 2>&1 || ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system packages for Xvfb and Qt"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "missing system packages; as root run: apt-get install $(APT_PACKAGES)"; \
	  fi; \
	fi

demo: install
	$(PY) -m napari_microstructure.demo --output demo-output

test: install-test system-deps
	QT_QPA_PLATFORM=xcb xvfb-run -a $(PY) -m pytest $(PYTEST_ARGS)

validate: install-test
	$(VENV)/bin/npe2 validate napari-microstructure

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The lock: a fresh venv resolved with nothing but the torch pin, frozen into constraints.txt,
# then the suite is run in that venv (a red suite leaves the new lock for you to inspect).
lock: system-deps
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip --disable-pip-version-check install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip --disable-pip-version-check install -q "$(TORCH_PIN)"
	$(LOCK_VENV)/bin/python -m pip --disable-pip-version-check install -q "$(TORCH_PIN)" -e ".[$(LOCK_EXTRAS)]"
	$(LOCK_VENV)/bin/python .ci/write_lock.py $(LOCK_VENV)/bin/python constraints.txt "$(TORCH_PIN)"
	QT_QPA_PLATFORM=xcb xvfb-run -a $(LOCK_VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The newest releases of everything but torch, in a venv of their own, to see upstream
# breakage before it reaches the lock.
test-latest: system-deps
	@test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip --disable-pip-version-check install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip --disable-pip-version-check install -q "$(TORCH_PIN)"
	$(LATEST_VENV)/bin/python -m pip --disable-pip-version-check install -q --upgrade --upgrade-strategy eager \
	  "$(TORCH_PIN)" -e ".[$(LOCK_EXTRAS)]"
	$(LATEST_VENV)/bin/python -m pip --disable-pip-version-check freeze --exclude-editable > $(LATEST_VENV)/versions.txt
	@echo "versions under test: $(LATEST_VENV)/versions.txt (diff it against constraints.txt)"
	QT_QPA_PLATFORM=xcb xvfb-run -a $(LATEST_VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(LATEST_VENV) demo-output build dist src/*.egg-info
