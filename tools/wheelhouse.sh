#!/usr/bin/env bash
# wheelhouse.sh PYTHON DIR: wheels of winopt[systemd,postgres,report,dashboard,s3] and everything it needs, built for
# PYTHON (the interpreter `make install` makes the service's venv with), into DIR.
# `make wheelhouse` and `make install` (without WHEELHOUSE=) run it.
#
# What this machine happens to hold never decides the result, so a fresh host builds what
# CI builds:
# - the build venv is a new one of PYTHON in a temp dir (Debian 12's has pip 23.0.1 and
#   setuptools 66 without `wheel`), removed afterwards;
# - every package is built through PEP 517 (--use-pep517) in an isolated environment that
#   fetches its own build requirements: systemd-python has no pyproject.toml, and the old
#   `setup.py bdist_wheel` path fails without `wheel` unless a built wheel sits in the pip
#   cache;
# - the source is copied into the temp dir first, so a build run as root (sudo make
#   install) writes no build/ or *.egg-info into the checkout.
# The package index is asked first, once, with a short timeout: a host without network
# stops within seconds, with one line saying what to do, instead of retrying for minutes.
set -Eeuo pipefail

PROBE_TIMEOUT=${PROBE_TIMEOUT:-5}
python=${1:?usage: wheelhouse.sh PYTHON DIR}
out=${2:?usage: wheelhouse.sh PYTHON DIR}
src=$(cd "$(dirname "$0")/.." && pwd)

PROG=${PROG:-wheelhouse.sh}  # who speaks in the error line: `make wheelhouse`, `make install`
fail() { echo "$PROG: error: $*" >&2; exit 1; }

[ -x "$python" ] || fail "$python: no such interpreter (install python3, or give SYSTEM_PYTHON=...)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/winopt-wheelhouse.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP

"$python" -m venv "$tmp/venv" >"$tmp/venv.log" 2>&1 \
    || fail "$python -m venv failed: $(tail -n 1 "$tmp/venv.log") (install python3-venv)"
pip=("$tmp/venv/bin/pip" --disable-pip-version-check)

# One try, a short timeout, no cache (a cached page must not pass for a reachable index).
if ! "${pip[@]}" download --no-cache-dir --no-deps --retries 0 --timeout "$PROBE_TIMEOUT" \
        -q -d "$tmp/probe" wheel >"$tmp/probe.log" 2>&1; then
    fail "cannot reach the package index within ${PROBE_TIMEOUT} s (no network?), so winopt" \
         "and its dependencies cannot be fetched and built here: on a connected host with the" \
         "same Debian release run 'make wheelhouse WHEELHOUSE=DIR', copy DIR here and run" \
         "'sudo make install WHEELHOUSE=DIR'"
fi

mkdir -p "$tmp/src" "$out"
tar -C "$src" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
    --exclude='*.egg-info' --exclude=./demo-out --exclude=./.pytest_cache --exclude=./.hypothesis \
    --exclude=./tests --exclude=./bench -cf - . | tar -C "$tmp/src" -xf -
"${pip[@]}" wheel -q --use-pep517 -w "$out" "$tmp/src[systemd,postgres,report,dashboard,s3]"
echo "wheelhouse: $(cd "$out" && pwd): $(ls "$out"/*.whl | wc -l) wheels for $("$python" -c 'import sys; print("Python %d.%d" % sys.version_info[:2])')"
