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

# ---- install as a service (SPEC §6) -------------------------------------------------
# sudo make install [WHEELHOUSE=DIR]   venv in $(PREFIX), unit, sysusers, tmpfiles, config
# sudo make uninstall                  removes all but state (/var/lib/winopt) and config
# make wheelhouse [WHEELHOUSE=DIR]     wheels of winopt[systemd] and all it needs, for
#                                      offline installs (rigs and test boxes)
PREFIX ?= /opt/winopt
SYSTEM_PYTHON ?= /usr/bin/python3
WHEELHOUSE ?=
UNITDIR ?= /etc/systemd/system
SYSUSERSDIR ?= /etc/sysusers.d
TMPFILESDIR ?= /etc/tmpfiles.d
CONFDIR ?= /etc/winopt
PIP_SOURCE = $(if $(WHEELHOUSE),--no-index --find-links $(abspath $(WHEELHOUSE)) 'winopt[systemd]',$(CURDIR)[systemd])

.PHONY: install uninstall wheelhouse

wheelhouse: venv
	$(PY) -m pip wheel -q -w $(or $(WHEELHOUSE),wheelhouse) '.[systemd]'

install:
	[ -x $(PREFIX)/bin/python ] || $(SYSTEM_PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/pip install -q --upgrade --force-reinstall --no-deps $(PIP_SOURCE) \
	  && $(PREFIX)/bin/pip install -q $(PIP_SOURCE)
	install -D -m 0644 systemd/winopt-daemon.service $(UNITDIR)/winopt-daemon.service
	sed -i 's|/opt/winopt/|$(PREFIX)/|g' $(UNITDIR)/winopt-daemon.service
	install -D -m 0644 systemd/winopt.sysusers $(SYSUSERSDIR)/winopt.conf
	install -D -m 0644 systemd/winopt.tmpfiles $(TMPFILESDIR)/winopt.conf
	systemd-sysusers $(SYSUSERSDIR)/winopt.conf
	systemd-tmpfiles --create $(TMPFILESDIR)/winopt.conf
	[ -e $(CONFDIR)/daemon.toml ] || install -D -m 0640 -g winopt etc/daemon.toml $(CONFDIR)/daemon.toml
	ln -sfn $(PREFIX)/bin/winopt /usr/local/bin/winopt
	systemctl daemon-reload
	@echo "installed: systemctl enable --now winopt-daemon"

uninstall:
	-systemctl disable --now winopt-daemon.service
	rm -f $(UNITDIR)/winopt-daemon.service $(SYSUSERSDIR)/winopt.conf $(TMPFILESDIR)/winopt.conf
	[ "$$(readlink /usr/local/bin/winopt)" != "$(PREFIX)/bin/winopt" ] || rm -f /usr/local/bin/winopt
	rm -rf $(PREFIX)
	-systemctl daemon-reload
	@echo "removed; kept state (/var/lib/winopt) and config ($(CONFDIR))"
