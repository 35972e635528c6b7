# Sourced by scripts/*-setup.sh, not run: how each of them installs Debian packages, so that
# every setup installs them the same way (no package's service started, one install at a time,
# the apt log's tail on failure). The caller sets `-euo pipefail` and defines `die` and `note`,
# which name it in their messages.

# Wait up to 10 minutes to hold /run/outpost-NAME.lock on file descriptor 8: test runs may start
# side by side, and the later one then finds the work done. Held until the script exits.
hold_lock() {
  exec 8>"/run/outpost-$1.lock"
  flock -w 600 8 || die "another $1.sh held /run/outpost-$1.lock for 10 minutes"
}

# Install the packages named, without recommends. A package's init script is kept from starting
# its service while installing (policy-rc.d, unless the machine has one of its own): each setup
# starts what the tests need itself.
apt_install() {
  local made_policy= ok=1 apt_log
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt_log=$(mktemp /tmp/outpost-apt.XXXXXX)
  apt-get update -q >"$apt_log" 2>&1 &&
    apt-get install -y -q --no-install-recommends "$@" >>"$apt_log" 2>&1 || ok=
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  if [ -z "$ok" ]; then
    tail -n 20 "$apt_log" >&2
    die "apt-get install $* failed (log: $apt_log)"
  fi
  rm -f "$apt_log"
}

# Under systemd, stop and disable the service a package enabled and started: the tests run
# their own instance, and want no second one on its default ports.
disable_service() {
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now "$1.service" >/dev/null 2>&1 || true
  fi
}
