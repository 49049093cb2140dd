# winopt: set-up, demo and tests.  `make demo` and `make test` work on a fresh
# Debian machine: they install the Debian packages they need (when missing),
# create .venv and install winopt into it. Each installs only what it needs: the demo
# a venv (python3-venv) and winopt; the tests also the rigs' rsync and sshd, iproute2,
# and a compiler with the headers that systemd-python builds with, headless chromium (the
# report's test), PostgreSQL (the shared-study tests make a throw-away cluster), and the
# extras test,systemd,postgres,report,dashboard,s3.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DEB_PACKAGES := python3-venv
TEST_DEB_PACKAGES := python3-venv rsync openssh-server openssh-client libsystemd-dev pkg-config iproute2 gcc python3-dev chromium postgresql
# what `make deps` installs (other targets pass their own list)
DEB_PACKAGES ?= $(TEST_DEB_PACKAGES)
EXTRAS ?= test,systemd,postgres,report,dashboard,s3

.PHONY: demo test test-fast stress deps venv clean man

# Debian packages: only the missing ones, never starting their services.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  policy=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' | $$sudo tee /usr/sbin/policy-rc.d >/dev/null; $$sudo chmod +x /usr/sbin/policy-rc.d; policy=1; fi; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; rc=$$?; \
	  [ $$policy = 1 ] && $$sudo rm -f /usr/sbin/policy-rc.d; \
	  [ $$rc = 0 ] || echo "make: error: apt-get could not install $$missing: install them by hand (apt-get install $$missing), from a local mirror when this host has no network" >&2; \
	  exit $$rc; \
	fi

# The test venv: winopt editable with the extras the tests use.
$(VENV)/.installed: pyproject.toml
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(TEST_DEB_PACKAGES)"
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@ $(VENV)/.demo-installed

# The demo's venv: winopt alone (no compiler, no sshd, no test extras).
$(VENV)/.demo-installed: pyproject.toml
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(DEMO_DEB_PACKAGES)"
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.demo-installed
	$(VENV)/bin/winopt demo --out demo-out

# The whole suite: the import contract (pyproject.toml), the default run (< 10 min), then
# the stress marker.
test: venv
	$(PY) tools/lint_imports.py
	$(PY) -m pytest -q --durations=15
	$(PY) -m pytest -q --durations=10 -m stress || [ $$? -eq 5 ]

test-fast: venv
	$(PY) -m pytest -q -x

stress: venv
	$(PY) -m pytest -q -m stress

clean:
	rm -rf $(VENV) demo-out build man *.egg-info .pytest_cache .hypothesis

# The man pages, written from the commands' argparse definitions into man/ (read one with
# `man -l man/winopt-status.1`; `make install` writes them where man finds them).
man: $(VENV)/.demo-installed
	$(VENV)/bin/winopt man --out man

# ---- install as a service (SPEC §6) -------------------------------------------------
# sudo make install [WHEELHOUSE=DIR]   venv in $(PREFIX), unit, sysusers, tmpfiles, config;
#                                      again = upgrade (the config is never overwritten)
# sudo make uninstall                  removes all but state (/var/lib/winopt), config
#                                      ($(CONFDIR), drop-ins) and the winopt user
# make wheelhouse [WHEELHOUSE=DIR]     wheels of winopt[systemd,postgres,report,dashboard,s3] and all it needs, built for
#                                      $(SYSTEM_PYTHON), for offline installs (rigs, test boxes)
# make install-docs [WINOPT_BIN=...]   man pages (winopt.1, winopt-COMMAND.1) into $(MANDIR)
#                                      and bash completion into $(BASHCOMPDIR), written by the
#                                      installed winopt from its own options (install runs it)
PREFIX ?= /opt/winopt
SYSTEM_PYTHON ?= /usr/bin/python3
WHEELHOUSE ?=
UNITDIR ?= /etc/systemd/system
SYSUSERSDIR ?= /etc/sysusers.d
TMPFILESDIR ?= /etc/tmpfiles.d
CONFDIR ?= /etc/winopt
BINDIR ?= /usr/local/bin
MANDIR ?= /usr/local/share/man/man1
BASHCOMPDIR ?= /usr/share/bash-completion/completions
WINOPT_BIN ?= $(PREFIX)/bin/winopt
UNIT := winopt-daemon.service
# a rig's `winopt worker`, one instance per GPU (README "Several machines")
WORKER_UNIT := winopt-worker@.service
# Debian packages the service runs with; building its wheels (no WHEELHOUSE) needs more.
BUILD_DEB_PACKAGES := python3-venv libsystemd-dev pkg-config gcc python3-dev
SERVICE_DEB_PACKAGES := python3-venv rsync openssh-client $(if $(WHEELHOUSE),,$(BUILD_DEB_PACKAGES))
# systemctl talks to a running systemd only; in a chroot or image build it is skipped.
SYSTEMD_RUNNING := [ -d /run/systemd/system ]

.PHONY: install uninstall wheelhouse install-docs

# Built in a fresh venv of $(SYSTEM_PYTHON), the interpreter `install` uses, so that
# compiled wheels (systemd-python, numpy) match it whatever Python the development .venv
# has, and with the pip cache out of the picture (tools/wheelhouse.sh says how).
wheelhouse:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(BUILD_DEB_PACKAGES)"
	@PROG="make wheelhouse" tools/wheelhouse.sh $(SYSTEM_PYTHON) $(abspath $(or $(WHEELHOUSE),build/wheelhouse))

# Without WHEELHOUSE the wheels are built first (the package index must answer within
# seconds, else one line says to use a wheelhouse); $(PREFIX) is touched only then, and a
# new one is removed again on failure (tools/install-venv.sh).
install:
	@[ "$$(id -u)" = 0 ] || { echo "make install: error: installing a system service needs root: sudo make install" >&2; exit 1; }
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(SERVICE_DEB_PACKAGES)"
	@PROG="make install" tools/install-venv.sh $(SYSTEM_PYTHON) $(PREFIX) $(if $(WHEELHOUSE),$(abspath $(WHEELHOUSE)))
	install -D -m 0644 systemd/$(UNIT) $(UNITDIR)/$(UNIT)
	sed -i 's|/opt/winopt/|$(PREFIX)/|g' $(UNITDIR)/$(UNIT)
	install -D -m 0644 systemd/$(WORKER_UNIT) $(UNITDIR)/$(WORKER_UNIT)
	sed -i 's|/opt/winopt/|$(PREFIX)/|g' $(UNITDIR)/$(WORKER_UNIT)
	install -D -m 0644 systemd/winopt.sysusers $(SYSUSERSDIR)/winopt.conf
	install -D -m 0644 systemd/winopt.tmpfiles $(TMPFILESDIR)/winopt.conf
	systemd-sysusers $(SYSUSERSDIR)/winopt.conf
	systemd-tmpfiles --create $(TMPFILESDIR)/winopt.conf
	[ -e $(CONFDIR)/daemon.toml ] || install -D -m 0640 -g winopt etc/daemon.toml $(CONFDIR)/daemon.toml
	[ -e $(CONFDIR)/worker.env ] || install -D -m 0640 -g winopt etc/worker.env $(CONFDIR)/worker.env
	ln -sfn $(PREFIX)/bin/winopt $(BINDIR)/winopt
	@$(MAKE) --no-print-directory install-docs
	! $(SYSTEMD_RUNNING) || systemctl daemon-reload
	@if $(SYSTEMD_RUNNING) && systemctl -q is-active $(UNIT); then \
	  echo "installed; the running daemon has the old version: systemctl restart winopt-daemon"; \
	else echo "installed; start it with: systemctl enable --now winopt-daemon"; fi

# Generated by the winopt just installed, so they describe exactly its commands and options.
install-docs:
	$(WINOPT_BIN) man --out $(MANDIR)
	install -d $(BASHCOMPDIR)
	$(WINOPT_BIN) completion bash > $(BASHCOMPDIR)/.winopt.tmp && mv $(BASHCOMPDIR)/.winopt.tmp $(BASHCOMPDIR)/winopt

uninstall:
	! $(SYSTEMD_RUNNING) || [ ! -e $(UNITDIR)/$(UNIT) ] || systemctl disable --now $(UNIT)
	! $(SYSTEMD_RUNNING) || ! systemctl -q is-failed $(UNIT) || systemctl reset-failed $(UNIT)
	rm -f $(UNITDIR)/$(UNIT) $(UNITDIR)/$(WORKER_UNIT) $(SYSUSERSDIR)/winopt.conf $(TMPFILESDIR)/winopt.conf
	[ "$$(readlink $(BINDIR)/winopt)" != "$(PREFIX)/bin/winopt" ] || rm -f $(BINDIR)/winopt
	rm -f $(MANDIR)/winopt.1 $(MANDIR)/winopt-*.1 $(BASHCOMPDIR)/winopt
	rm -rf $(PREFIX)
	! $(SYSTEMD_RUNNING) || systemctl daemon-reload
	@echo "removed; kept state (/var/lib/winopt), config ($(CONFDIR), $(UNITDIR)/$(UNIT).d) and user winopt"
