#!/usr/bin/env bash
# A simulated constrained link between this host and a "device" network namespace, shaped in
# the kernel: a veth pair, tbf for rate, iptables statistic drops for loss, and nfq-delay
# (an NFQUEUE holder) for round-trip delay, since this kernel has no netem (shared/NOTES.md).
#
#   scripts/link.sh up [PROFILE]   create namespace + veth, apply PROFILE (default: lte)
#   scripts/link.sh down           remove everything `up` made (safe to run twice)
#   scripts/link.sh exec CMD...    run CMD in the device namespace (same mount namespace)
#   scripts/link.sh profiles       list the profiles
#
# Host side: 10.77.0.1 (servers listen here); device side: 10.77.0.2 in namespace es-dev.
set -euo pipefail
cd "$(dirname "$0")/.."

NS=es-dev
HOST_IF=es-host
DEV_IF=es-dev0
HOST_ADDR=10.77.0.1
DEV_ADDR=10.77.0.2
QUEUE_NUM=7707
STATE_DIR=/run/edgestar-link
DELAY_BIN=${EDGESTAR_CACHE_DIR:-$PWD/.cache}/bin/nfq-delay

# name  rate     round-trip-ms  loss-probability
PROFILES="
lte    8mbit    100  0.005
ci     20mbit   40   0.002
edge   1mbit    300  0.01
clean  1000mbit 0    0
"

profile_field() {
  awk -v name="$1" -v col="$2" '$1 == name { print $col }' <<<"$PROFILES"
}

build_delay() {
  if [ -x "$DELAY_BIN" ] && [ "$DELAY_BIN" -nt scripts/link/nfq-delay.c ]; then return; fi
  mkdir -p "$(dirname "$DELAY_BIN")"
  gcc -O2 -Wall -o "$DELAY_BIN" scripts/link/nfq-delay.c -lnetfilter_queue -lnfnetlink
}

in_ns() {
  nsenter --net="/run/netns/$NS" -- "$@"
}

up() {
  local profile=${1:-lte}
  local rate rtt loss
  rate=$(profile_field "$profile" 2)
  rtt=$(profile_field "$profile" 3)
  loss=$(profile_field "$profile" 4)
  if [ -z "$rate" ]; then
    echo "link: unknown profile '$profile'; choose one of: $(awk 'NF {print $1}' <<<"$PROFILES" | xargs)" >&2
    exit 2
  fi
  down >/dev/null 2>&1 || true
  build_delay
  mkdir -p "$STATE_DIR"

  ip netns add "$NS"
  ip link add "$HOST_IF" type veth peer name "$DEV_IF"
  ip link set "$DEV_IF" netns "$NS"
  ip addr add "$HOST_ADDR/30" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  in_ns ip addr add "$DEV_ADDR/30" dev "$DEV_IF"
  in_ns ip link set "$DEV_IF" up
  in_ns ip link set lo up

  # Rate, both directions, on each side's egress.
  tc qdisc replace dev "$HOST_IF" root tbf rate "$rate" burst 32kbit latency 400ms
  in_ns tc qdisc replace dev "$DEV_IF" root tbf rate "$rate" burst 32kbit latency 400ms

  # Loss, both directions, on each side's ingress.
  if [ "$loss" != 0 ]; then
    iptables -w -A INPUT -i "$HOST_IF" -m statistic --mode random --probability "$loss" -j DROP
    in_ns iptables -w -A INPUT -i "$DEV_IF" -m statistic --mode random --probability "$loss" -j DROP
  fi

  # Delay: the whole round trip is added to the downlink, on the device's receiving side.
  if [ "$rtt" != 0 ]; then
    in_ns iptables -w -A INPUT -i "$DEV_IF" -j NFQUEUE --queue-num "$QUEUE_NUM" --queue-bypass
    # Detached from our stdout/stderr so callers that wait for output to close do not hang.
    nsenter --net="/run/netns/$NS" -- "$DELAY_BIN" "$QUEUE_NUM" "$rtt" \
      </dev/null >"$STATE_DIR/nfq-delay.log" 2>&1 &
    echo $! >"$STATE_DIR/nfq-delay.pid"
  fi

  echo "$profile $rate ${rtt}ms $loss" >"$STATE_DIR/profile"
  echo "link: up ($profile: $rate, ${rtt} ms round trip, loss $loss); host $HOST_ADDR, device $DEV_ADDR in netns $NS" >&2
}

down() {
  if [ -f "$STATE_DIR/nfq-delay.pid" ]; then
    kill "$(cat "$STATE_DIR/nfq-delay.pid")" 2>/dev/null || true
    rm -f "$STATE_DIR/nfq-delay.pid"
  fi
  pkill -f "^$DELAY_BIN $QUEUE_NUM " 2>/dev/null || true
  while iptables -w -D INPUT -i "$HOST_IF" -m statistic --mode random \
    --probability "$(awk '{print $4}' "$STATE_DIR/profile" 2>/dev/null || echo 0)" -j DROP 2>/dev/null; do :; done
  ip link del "$HOST_IF" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -f "$STATE_DIR/profile"
  echo "link: down" >&2
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  # exec, so the caller's pid is the command's own and signals reach it.
  exec) shift; exec nsenter --net="/run/netns/$NS" -- "$@" ;;
  profiles) echo "name rate round-trip-ms loss"; awk 'NF' <<<"$PROFILES" ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
