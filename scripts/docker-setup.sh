#!/usr/bin/env bash
# Brings up a real Docker engine and the end-to-end tests' image, so that the
# tests can drive the stock `docker` CLI against a real `dockerd`.
#
#   1. installs Debian's docker.io (dockerd, containerd, runc, tini),
#      busybox-static, docker-compose (1.29, the Python one: an older
#      client the hub must keep serving) and docker-registry (2.8, the
#      registry a test runs itself behind an emulated link; its service is
#      never started) when they are missing;
#   2. starts dockerd in the background when no engine answers on
#      /var/run/docker.sock, and waits until it does;
#   3. imports the test image (outpost-test/busybox:latest) from a root
#      filesystem made of Debian's static busybox, when it is missing.
#
# Idempotent, and quick (well under 2 s) when everything is already up. Prints
# one summary line on success; exits non-zero with a message otherwise. Must
# run as root. No registry is ever contacted, and nothing leaves the machine:
# dockerd runs in a network namespace of its own with only loopback, and the
# default bridge is off, so a container started without --network gets only
# loopback, as with `--network none`.
#
# Notes for callers:
#   - the client is whichever `docker` comes first on PATH (here the newer CLI
#     in /usr/local/bin, not the package's /usr/bin/docker); it negotiates the
#     API version down to the engine's;
#   - `docker build` runs on the classic builder: there is no buildx plugin, so
#     DOCKER_BUILDKIT=1 fails; set DOCKER_BUILDKIT=0 (unset also falls back to
#     the classic builder, with a longer deprecation notice on stderr);
#   - the engine is Debian's 20.10: Engine API 1.41 at most;
#   - the engine's log is in $OUTPOST_DOCKERD_LOG (default
#     /tmp/outpost-dockerd.log).
#
# Environment (all optional):
#   OUTPOST_TEST_IMAGE       image to import  (outpost-test/busybox:latest)
#   OUTPOST_DOCKERD_LOG      dockerd's log     (/tmp/outpost-dockerd.log)
#   OUTPOST_DOCKERD_WAIT     seconds to wait for the engine to answer (60)
#   OUTPOST_DOCKERD_STORAGE  storage driver   (overlay2 if it mounts, else vfs)
#   OUTPOST_DOCKERD_NETNS    1: run dockerd in a network namespace of its own
#                            (default); 0: in the host's
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"

IMAGE=${OUTPOST_TEST_IMAGE:-outpost-test/busybox:latest}
LOG=${OUTPOST_DOCKERD_LOG:-/tmp/outpost-dockerd.log}
WAIT=${OUTPOST_DOCKERD_WAIT:-60}
NETNS=${OUTPOST_DOCKERD_NETNS:-1}
SOCK=/var/run/docker.sock
PIDFILE=/var/run/docker.pid

# This script manages the local engine on the default socket, whatever the
# caller's environment points the CLI at.
export DOCKER_HOST="unix://$SOCK"
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
export DEBIAN_FRONTEND=noninteractive

die() {
  echo "docker-setup: ERROR: $*" >&2
  exit 1
}
note() { echo "docker-setup: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts dockerd)"

# One setup at a time (test runs may start side by side): the later one waits,
# then finds the engine up and the image there.
hold_lock docker-setup

# --- 1. packages ------------------------------------------------------------

# The CLI the tests will call: the first `docker` on PATH, looked up before the
# package can add its own older /usr/bin/docker.
cli_before=$(command -v docker || true)

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
# The image needs the static busybox (the `busybox` package's is dynamic).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
# Debian's docker-compose 1.29 (docker-py 5, TLS 1.2): tests/tests/compose_client.rs.
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# Debian's registry 2.8, which tests/src/registry.rs runs in a rig's namespace
# (tests/tests/stack_pull_outage.rs): a pull across an emulated link.
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
if [ "${#missing[@]}" -gt 0 ]; then
  note "installing ${missing[*]} ..."
  # The package's init script would start a dockerd with its own defaults;
  # this script starts the engine itself with the flags below.
  apt_install "${missing[@]}"
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd not found after installing docker.io"
[ -x /bin/busybox ] || die "/bin/busybox not found after installing busybox-static"
command -v docker-compose >/dev/null 2>&1 || die "docker-compose not found after installing docker-compose"
command -v docker-registry >/dev/null 2>&1 || die "docker-registry not found after installing docker-registry"

DOCKER=$(command -v docker || true)
[ -n "$DOCKER" ] || die "no docker CLI on PATH"
if [ -n "$cli_before" ] && [ "$cli_before" != "$DOCKER" ]; then
  note "warning: 'docker' on PATH is now $DOCKER, was $cli_before; using $cli_before"
  DOCKER=$cli_before
fi
docker() { "$DOCKER" "$@"; }

# --- 2. the engine ----------------------------------------------------------

engine_up() { timeout 10 "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

dockerd_pid() {
  local pid
  [ -r "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -qa dockerd "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

storage_driver() {
  if [ -n "${OUTPOST_DOCKERD_STORAGE:-}" ]; then
    echo "$OUTPOST_DOCKERD_STORAGE"
    return
  fi
  # overlay2 needs a kernel overlay mount on the data root's file system.
  local d
  mkdir -p /var/lib/docker
  d=$(mktemp -d /var/lib/docker/.outpost-probe.XXXXXX)
  mkdir "$d/l" "$d/u" "$d/w" "$d/m"
  if mount -t overlay overlay -o "lowerdir=$d/l,upperdir=$d/u,workdir=$d/w" "$d/m" 2>/dev/null; then
    umount "$d/m"
    rm -rf "$d"
    echo overlay2
  else
    rm -rf "$d"
    echo vfs
  fi
}

# The end of what this start wrote to dockerd's log (appended to across
# starts), and its errors: at info level it is mostly gRPC chatter.
log_tail() {
  local this
  this=$(tail -n "+$((log_from + 1))" "$LOG" 2>/dev/null || true)
  echo "--- last lines of $LOG:" >&2
  tail -n 8 <<<"$this" >&2
  echo "--- errors in it (last 10):" >&2
  grep -E 'level=(error|fatal)|failed to start|Error starting daemon' <<<"$this" | tail -n 10 >&2 || true
}

started=
log_from=0
[ -f "$LOG" ] && log_from=$(wc -l <"$LOG")
if ! engine_up; then
  if pid=$(dockerd_pid); then
    note "dockerd (pid $pid) is running but not answering yet; waiting"
  else
    driver=$(storage_driver)
    # --bridge=none, --iptables=false, --ip6tables=false, --ip-forward=false,
    # --ip-masq=false: no docker0 bridge, so containers on the default network
    # get only loopback, as with `--network none` (no registry is reachable and
    # nothing may go to non-loopback addresses), `docker run` without flags
    # still works, and dockerd leaves firewall rules and sysctls alone. Networks
    # it makes (a Compose project's default network) take their subnets from
    # 198.19.0.0/16, inside the test range; the extra engines of
    # tests/src/dockerd.rs use 198.18.0.0/16.
    flags=(
      --host="unix://$SOCK"
      --pidfile="$PIDFILE"
      --storage-driver="$driver"
      --bridge=none
      --iptables=false
      --ip6tables=false
      --ip-forward=false
      --ip-masq=false
      --default-address-pool=base=198.19.0.0/16,size=24
      --exec-opt=native.cgroupdriver=cgroupfs
    )
    echo "=== $(date -u +%FT%TZ) docker-setup: starting dockerd ${flags[*]} (netns: ${NETNS})" >>"$LOG"
    # Own session, no terminal, stdio to the log, and not the lock's fd 9 (or
    # it would hold the lock for its whole life): it outlives this script and
    # the test run that called it.
    if [ "$NETNS" = 1 ]; then
      # dockerd in a network namespace of its own, with only loopback:
      # nothing it or its containers do can reach past this machine, and
      # net.ipv4.ip_forward can be 1 there (without touching the host's), which
      # stops the engine from warning "IPv4 forwarding is disabled" on every
      # `docker run` / build step. The socket is a file, so the CLI on the host
      # reaches it as usual.
      setsid unshare --net sh -c '
        ip link set lo up 2>/dev/null || true
        echo 1 >/proc/sys/net/ipv4/ip_forward
        exec dockerd "$@"' dockerd "${flags[@]}" </dev/null >>"$LOG" 2>&1 8>&- &
    else
      setsid dockerd "${flags[@]}" </dev/null >>"$LOG" 2>&1 8>&- &
    fi
    started=$!
  fi
  deadline=$((SECONDS + WAIT))
  until engine_up; do
    if [ -n "$started" ] && ! kill -0 "$started" 2>/dev/null; then
      log_tail
      die "dockerd exited before it answered on $SOCK (log: $LOG)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail
      die "dockerd did not answer on $SOCK within ${WAIT}s (log: $LOG)"
    fi
    sleep 0.2
  done
fi

# --- 3. the test image ------------------------------------------------------

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  root=$(mktemp -d /tmp/outpost-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,proc,sys,dev,var/tmp,tmp}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chmod 700 "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  # Every applet under its usual path (bin/sh, bin/cat, usr/bin/env, ...).
  /bin/busybox --list-full | while read -r applet; do
    case "$applet" in
      */*) [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet" ;;
    esac
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  : >"$root/etc/hosts"
  : >"$root/etc/resolv.conf"
  echo outpost-test >"$root/etc/hostname"
  tar --numeric-owner --owner=0 --group=0 -C "$root" -cf - . |
    docker import \
      --change 'CMD ["/bin/sh"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'LABEL org.outpost.test-image=busybox' \
      - "$IMAGE" >/dev/null || die "docker import of $IMAGE failed"
  rm -rf "$root"
  trap - EXIT
  if ! out=$(docker run --rm "$IMAGE" true 2>&1); then
    echo "$out" >&2
    die "imported $IMAGE but a container from it does not run (log: $LOG)"
  fi
fi

server=$(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null) ||
  die "engine stopped answering on $SOCK"
client=$(docker version --format '{{.Client.Version}}' 2>/dev/null || echo '?')
driver=$(docker info --format '{{.Driver}}' 2>/dev/null || echo '?')
state=running
[ -n "$started" ] && state="started pid $started"
echo "docker-setup: ok: dockerd $server $state on $SOCK, storage $driver; CLI $DOCKER $client; image $IMAGE; log $LOG"
