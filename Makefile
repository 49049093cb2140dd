# winopt: set-up, demo and tests.  `make demo` and `make test` work on a fresh
# Debian machine: they install the Debian packages they need (when missing),
# create .venv and install winopt into it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := rsync openssh-server openssh-client libsystemd-dev pkg-config iproute2 gcc python3-dev
EXTRAS ?= test,systemd

.PHONY: demo test test-fast stress deps venv clean

# Debian packages: only the missing ones, never starting their services.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  policy=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' | $$sudo tee /usr/sbin/policy-rc.d >/dev/null; $$sudo chmod +x /usr/sbin/policy-rc.d; policy=1; fi; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; rc=$$?; \
	  [ $$policy = 1 ] && $$sudo rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory deps
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/winopt demo --out demo-out

# The whole suite: the default run (< 10 min), then the stress marker.
test: venv
	$(PY) -m pytest -q
	$(PY) -m pytest -q -m stress || [ $$? -eq 5 ]

test-fast: venv
	$(PY) -m pytest -q -x

stress: venv
	$(PY) -m pytest -q -m stress

clean:
	rm -rf $(VENV) demo-out build *.egg-info .pytest_cache .hypothesis
