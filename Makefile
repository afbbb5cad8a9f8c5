# napari-microstructure: set-up and checks for a fresh machine.
#   make demo   install, train on the bundled sample data, write demo-output/
#   make test   install the test extras (and, as root, Xvfb/Qt system packages), run the suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
CONSTRAINTS := -c constraints.txt
APT_PACKAGES := xvfb xauth libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 \
	libxkbcommon-x11-0 libx11-xcb1 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
	libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 libxcb-xfixes0 libxcb-cursor0
PYTEST_ARGS ?=

.PHONY: demo test install install-test system-deps bench validate clean

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

clean:
	rm -rf $(VENV) demo-output build dist src/*.egg-info
