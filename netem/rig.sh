#!/usr/bin/env bash
# Outpost link-emulation rig: three network namespaces on an emulated link.
#
#   [hub ns] eth0 198.18.0.1/24 ── vh [router ns] va ── eth0 198.18.1.1/24 [agent ns]
#
# Addresses come from 198.18.0.0/15 (the benchmarking range, RFC 2544); the hub and the agent
# route only 198.18.0.0/15, through the router, and nothing is routed outside. The router shapes
# traffic with the profile: with `tc qdisc netem` on its two veths where the kernel has sch_netem,
# else (the usual case here) with the userspace L3 emulator (`outpost-netem router`) fed by policy
# routing through two TUN devices, so TCP and UDP cross exactly the same LinkModel.
#
# Usage:
#   rig.sh up [--profile NAME|FILE] [--seed N] [--mode auto|tc|userspace]
#   rig.sh down                      idempotent
#   rig.sh exec hub|router|agent CMD [ARGS...]
#   rig.sh ctl COMMAND...            profile NAME | outage 5s | counters  (userspace mode)
#   rig.sh status
# Environment:
#   RIG_PREFIX         namespace name prefix (default "orig"); make it unique per test
#   RIG_STATE_DIR      where the pid file and control socket live (default /run/outpost-rig/PREFIX)
#   OUTPOST_NETEM_BIN  the outpost-netem binary (default: on PATH, else target*/{release,debug})
set -euo pipefail

PREFIX=${RIG_PREFIX:-orig}
NS_HUB="$PREFIX-hub"
NS_ROUTER="$PREFIX-router"
NS_AGENT="$PREFIX-agent"
STATE=${RIG_STATE_DIR:-/run/outpost-rig/$PREFIX}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

HUB_IP=198.18.0.1
ROUTER_HUB_IP=198.18.0.254
AGENT_IP=198.18.1.1
ROUTER_AGENT_IP=198.18.1.254
RIG_NET=198.18.0.0/15
HUB_NET=198.18.0.0/24
AGENT_NET=198.18.1.0/24
HUB_TUN=nhub0
AGENT_TUN=nagent0

die() { echo "rig: $*" >&2; exit 1; }

netem_bin() {
    if [[ -n "${OUTPOST_NETEM_BIN:-}" ]]; then echo "$OUTPOST_NETEM_BIN"; return; fi
    if command -v outpost-netem >/dev/null 2>&1; then command -v outpost-netem; return; fi
    for build in release debug; do
        local candidate="$HERE/../target/$build/outpost-netem"
        if [[ -x "$candidate" ]]; then echo "$candidate"; return; fi
    done
    die "outpost-netem binary not found; build it or set OUTPOST_NETEM_BIN"
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

ns_for() {
    case "$1" in
        hub) echo "$NS_HUB" ;;
        router) echo "$NS_ROUTER" ;;
        agent) echo "$NS_AGENT" ;;
        *) die "unknown namespace '$1' (hub, router or agent)" ;;
    esac
}

cmd_down() {
    if [[ -f "$STATE/router.pid" ]]; then
        local pid
        pid=$(cat "$STATE/router.pid")
        # Only the process we started, by its pid.
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    for ns in "$NS_HUB" "$NS_ROUTER" "$NS_AGENT"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$STATE"
}

# True if this kernel can attach a netem qdisc (tried on a throwaway dummy link).
tc_netem_works() {
    in_ns "$NS_ROUTER" ip link add netemprobe type veth peer name netemprobe1 2>/dev/null || return 1
    local ok=1
    in_ns "$NS_ROUTER" tc qdisc add dev netemprobe root netem delay 1ms 2>/dev/null && ok=0
    in_ns "$NS_ROUTER" ip link del netemprobe 2>/dev/null || true
    return $ok
}

start_userspace() {
    local profile=$1 seed=$2 bin
    bin=$(netem_bin)
    nohup ip netns exec "$NS_ROUTER" "$bin" router --hub-tun "$HUB_TUN" --agent-tun "$AGENT_TUN" \
        --profile "$profile" --seed "$seed" --control "$STATE/ctl.sock" \
        >"$STATE/router.log" 2>&1 &
    echo $! >"$STATE/router.pid"
    for _ in $(seq 100); do
        if in_ns "$NS_ROUTER" ip link show "$AGENT_TUN" >/dev/null 2>&1 && [[ -S "$STATE/ctl.sock" ]]; then
            break
        fi
        kill -0 "$(cat "$STATE/router.pid")" 2>/dev/null || { cat "$STATE/router.log" >&2; die "router exited"; }
        sleep 0.05
    done
    in_ns "$NS_ROUTER" ip link show "$AGENT_TUN" >/dev/null 2>&1 || die "router's TUN devices did not appear"
    # Traffic entering from one side is routed into that side's TUN device; the emulator writes
    # it out of the other TUN device, and the main table delivers it.
    in_ns "$NS_ROUTER" ip route add "$AGENT_NET" dev "$HUB_TUN" table 100
    in_ns "$NS_ROUTER" ip rule add iif vh table 100 priority 100
    in_ns "$NS_ROUTER" ip route add "$HUB_NET" dev "$AGENT_TUN" table 101
    in_ns "$NS_ROUTER" ip rule add iif va table 101 priority 101
    for dev in all default "$HUB_TUN" "$AGENT_TUN"; do
        in_ns "$NS_ROUTER" sysctl -qw "net.ipv4.conf.$dev.rp_filter=0"
    done
    echo userspace >"$STATE/mode"
}

start_tc() {
    local profile=$1 bin
    bin=$(netem_bin)
    # Egress of vh carries agent -> hub (up); egress of va carries hub -> agent (down).
    # shellcheck disable=SC2046
    in_ns "$NS_ROUTER" tc qdisc add dev vh root $("$bin" tc-args --profile "$profile" --direction up)
    # shellcheck disable=SC2046
    in_ns "$NS_ROUTER" tc qdisc add dev va root $("$bin" tc-args --profile "$profile" --direction down)
    echo tc >"$STATE/mode"
}

cmd_up() {
    local profile=transparent seed=1 mode=auto
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --profile) profile=$2; shift 2 ;;
            --seed) seed=$2; shift 2 ;;
            --mode) mode=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ $EUID -eq 0 ]] || die "needs root (network namespaces)"
    cmd_down
    mkdir -p "$STATE"
    for ns in "$NS_HUB" "$NS_ROUTER" "$NS_AGENT"; do
        ip netns add "$ns"
        in_ns "$ns" ip link set lo up
    done
    ip -n "$NS_ROUTER" link add vh type veth peer name eth0 netns "$NS_HUB"
    ip -n "$NS_ROUTER" link add va type veth peer name eth0 netns "$NS_AGENT"
    ip -n "$NS_ROUTER" addr add "$ROUTER_HUB_IP/24" dev vh
    ip -n "$NS_ROUTER" addr add "$ROUTER_AGENT_IP/24" dev va
    ip -n "$NS_ROUTER" link set vh up
    ip -n "$NS_ROUTER" link set va up
    ip -n "$NS_HUB" addr add "$HUB_IP/24" dev eth0
    ip -n "$NS_HUB" link set eth0 up
    ip -n "$NS_HUB" route add "$RIG_NET" via "$ROUTER_HUB_IP"
    ip -n "$NS_AGENT" addr add "$AGENT_IP/24" dev eth0
    ip -n "$NS_AGENT" link set eth0 up
    ip -n "$NS_AGENT" route add "$RIG_NET" via "$ROUTER_AGENT_IP"
    in_ns "$NS_ROUTER" sysctl -qw net.ipv4.ip_forward=1
    echo "$AGENT_IP" >"$STATE/agent_ip"
    case "$mode" in
        tc) start_tc "$profile" ;;
        userspace) start_userspace "$profile" "$seed" ;;
        auto) if tc_netem_works; then start_tc "$profile"; else start_userspace "$profile" "$seed"; fi ;;
        *) die "unknown mode $mode" ;;
    esac
    echo "rig $PREFIX up: hub $HUB_IP, agent $AGENT_IP, profile $profile, mode $(cat "$STATE/mode")"
}

cmd_status() {
    [[ -d "$STATE" ]] || { echo "rig $PREFIX is down"; return 1; }
    echo "rig $PREFIX: mode $(cat "$STATE/mode" 2>/dev/null || echo ?), agent $(cat "$STATE/agent_ip")"
    ip netns list | grep -E "^$PREFIX-(hub|router|agent)" || true
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    # exec, so that the caller's pid is the command's and killing it stops the command.
    exec) shift; [[ $# -ge 2 ]] || die "usage: rig.sh exec hub|router|agent CMD..."; ns=$(ns_for "$1"); shift; exec ip netns exec "$ns" "$@" ;;
    ctl) shift; [[ -S "$STATE/ctl.sock" ]] || die "no control socket (rig down, or in tc mode)"; "$(netem_bin)" ctl --control "$STATE/ctl.sock" "$@" ;;
    status) cmd_status ;;
    *) sed -n '2,24p' "$0"; exit 2 ;;
esac
