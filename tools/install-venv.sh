#!/usr/bin/env bash
# install-venv.sh PYTHON PREFIX [WHEELHOUSE]: the service's venv in PREFIX, made with PYTHON,
# with winopt[systemd,postgres,report,dashboard,s3] installed from the wheels in WHEELHOUSE, or, without one, from wheels
# that wheelhouse.sh builds first in a temp dir. `make install` runs it.
#
# Nothing is left half-made:
# - every download and build happens before PREFIX is touched; the venv is then filled
#   from local wheels only (--no-index), so a host without network fails before it starts;
# - a PREFIX this run created is removed again when anything fails (Ctrl-C included);
# - an existing venv (an upgrade) is upgraded in place by pip, which puts a package back
#   when its new version fails to install; the running daemon keeps the old version until
#   it is restarted.
set -Eeuo pipefail

python=${1:?usage: install-venv.sh PYTHON PREFIX [WHEELHOUSE]}
prefix=${2:?usage: install-venv.sh PYTHON PREFIX [WHEELHOUSE]}
wheels=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
export PROG=${PROG:-install-venv.sh}  # who speaks in error lines (wheelhouse.sh's too)

fail() { echo "$PROG: error: $*" >&2; exit 1; }

tmp=
created=
finished=
cleanup() {
    if [ -n "$created" ] && [ -z "$finished" ]; then rm -rf -- "$prefix"; fi
    if [ -n "$tmp" ]; then rm -rf -- "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

if [ -e "$prefix" ] && [ ! -x "$prefix/bin/python" ]; then
    fail "$prefix exists but holds no venv (left by an interrupted install?):" \
         "remove it (rm -rf $prefix) and run make install again"
fi
if [ -z "$wheels" ]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/winopt-install.XXXXXX")
    wheels=$tmp/wheels
    "$here/wheelhouse.sh" "$python" "$wheels"
elif ! compgen -G "$wheels/winopt-*.whl" >/dev/null; then
    fail "$wheels: no winopt wheel there: make the wheelhouse with" \
         "'make wheelhouse WHEELHOUSE=$wheels' on a connected host with the same Debian release"
fi

if [ ! -e "$prefix" ]; then
    created=1
    "$python" -m venv "$prefix"
fi
pip=("$prefix/bin/pip" --disable-pip-version-check install -q --no-index --find-links "$wheels")
"${pip[@]}" --upgrade --force-reinstall --no-deps 'winopt[systemd,postgres,report,dashboard,s3]'  # the same version, rebuilt
"${pip[@]}" 'winopt[systemd,postgres,report,dashboard,s3]'
finished=1
