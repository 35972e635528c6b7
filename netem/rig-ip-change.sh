#!/usr/bin/env bash
# Changes the agent namespace's IP address mid-run (an IP change, as when a modem reconnects and
# the carrier hands out a new address; not just a new NAT port). Existing sockets bound to the
# wildcard address keep working but their packets now leave from the new address, so the hub
# sees the agent migrate.
#
# Usage: rig-ip-change.sh [NEW_IP]   (default: toggles between 198.18.1.1 and 198.18.1.2)
# Environment: RIG_PREFIX, RIG_STATE_DIR as for rig.sh.
set -euo pipefail
PREFIX=${RIG_PREFIX:-orig}
NS_AGENT="$PREFIX-agent"
STATE=${RIG_STATE_DIR:-/run/outpost-rig/$PREFIX}
[[ -f "$STATE/agent_ip" ]] || { echo "rig $PREFIX is not up" >&2; exit 1; }
OLD=$(cat "$STATE/agent_ip")
if [[ $# -ge 1 ]]; then
    NEW=$1
elif [[ "$OLD" == 198.18.1.1 ]]; then
    NEW=198.18.1.2
else
    NEW=198.18.1.1
fi
[[ "$NEW" == 198.18.1.* ]] || { echo "new address must be in 198.18.1.0/24" >&2; exit 1; }
# Keep the new address when the old (primary) one goes, instead of flushing the whole subnet.
ip netns exec "$NS_AGENT" sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1
ip -n "$NS_AGENT" addr add "$NEW/24" dev eth0
ip -n "$NS_AGENT" addr del "$OLD/24" dev eth0
# The route went with the old address; put it back through the new one.
ip -n "$NS_AGENT" route replace 198.18.0.0/15 via 198.18.1.254 src "$NEW"
echo "$NEW" >"$STATE/agent_ip"
echo "agent address $OLD -> $NEW"
