#!/bin/sh
# tracer's real-topology scenarios for `cargo xtask matrix`.
#
# Runs as /init of a matrix VM (MATRIX_MODE=vm, set by the initramfs'
# /init wrapper) or on the host (MATRIX_MODE=host). It only *causes* the
# kernel events and records what it did; xtask decides pass/fail from the
# lines written to $MATRIX_OUT (xtask/src/matrix/scenarios.rs), each
# prefixed so that they survive interleaving with other console output:
#
#   @@MATRIX begin <uname -r>
#   @@check <json>          `tracer check --json` (one probe_status per probe)
#   @@premod <json>         the same in a VM before the modules are loaded
#   @@fact <id> <key> <value>   names, addresses, MACs, netns inodes
#   @@skip <id> <reason>    a scenario whose set-up the kernel refused
#   @@run <id> <what>       progress (for the log)
#   @@tracer <json>         every NDJSON line of the `tracer run`
#   @@stderr <text>         tracer's stderr
#   @@exit <code>           tracer's exit code after SIGINT
#   @@seconds <n>           how long the scenarios took
#   @@MATRIX end
#
# Needs: sh, busybox (nc, ping), iproute2's ip, $TRACER, $HELPER
# (bench_helper, for UDP: busybox nc has no -u).

set -u
# A peer that went away must not kill the script.
trap '' PIPE
: "${MATRIX_MODE:=host}"
: "${MATRIX_OUT:=/dev/stdout}"
: "${TRACER:=tracer}"
: "${HELPER:=bench_helper}"
# Namespace/interface prefix: unique per run on the host.
: "${P:=mx}"
WORK=${MATRIX_WORK:-/tmp/matrix.$$}

emit() { echo "$*" >>"$MATRIX_OUT"; }
log() { echo "matrix: $*" >&2; }
BB=busybox
# iproute2's ip, by path: busybox sh prefers its own applets, and busybox's
# `ip` knows no bridge, veth or vxlan.
: "${IP:=}"
if [ -z "$IP" ]; then
	for d in /sbin /usr/sbin /usr/bin /bin; do
		if [ -x "$d/ip" ] && [ ! -L "$d/ip" ]; then
			IP=$d/ip
			break
		fi
	done
fi

NSLIST=""
addns() {
	"$IP" netns del "$1" 2>/dev/null
	"$IP" netns add "$1" || return 1
	"$IP" -n "$1" link set lo up
	NSLIST="$NSLIST $1"
}
inode() { stat -L -c %i "/run/netns/$1"; }
mac() { "$IP" -n "$1" -o link show dev "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
ifindex() { "$IP" -n "$1" -o link show dev "$2" | cut -d: -f1; }
nsexec() { ns=$1; shift; "$IP" netns exec "$ns" "$@"; }
ping1() { nsexec "$1" $BB ping -c 1 -W "${3:-2}" "$2" >/dev/null 2>&1; }

# topo ID N: namespaces ${P}${ID}b (bridge br$ID), ${P}${ID}a and
# ${P}${ID}c (containers A and B, devices ea$ID/eb$ID on ports pa$ID/pb$ID),
# A = 10.250.N.1, B = 10.250.N.2.
topo() {
	id=$1
	n=$2
	B="${P}${id}b" A="${P}${id}a" C="${P}${id}c"
	addns "$B" && addns "$A" && addns "$C" || return 1
	"$IP" -n "$B" link add "br$id" type bridge || return 1
	"$IP" -n "$B" link set "br$id" up
	"$IP" -n "$B" link add "pa$id" type veth peer name "ea$id" netns "$A" || return 1
	"$IP" -n "$B" link add "pb$id" type veth peer name "eb$id" netns "$C" || return 1
	for p in "pa$id" "pb$id"; do
		"$IP" -n "$B" link set "$p" master "br$id" || return 1
		"$IP" -n "$B" link set "$p" up
	done
	"$IP" -n "$A" link set "ea$id" up
	"$IP" -n "$C" link set "eb$id" up
	"$IP" -n "$A" addr add "10.250.$n.1/24" dev "ea$id"
	"$IP" -n "$C" addr add "10.250.$n.2/24" dev "eb$id"
	IPA="10.250.$n.1" IPB="10.250.$n.2"
	emit "@@fact $id br_inode $(inode "$B")"
	emit "@@fact $id a_inode $(inode "$A")"
	emit "@@fact $id b_inode $(inode "$C")"
	emit "@@fact $id bridge br$id"
	emit "@@fact $id port_a pa$id"
	emit "@@fact $id port_b pb$id"
	emit "@@fact $id dev_a ea$id"
	emit "@@fact $id dev_b eb$id"
	emit "@@fact $id ip_a $IPA"
	emit "@@fact $id ip_b $IPB"
}
facts_macs() {
	emit "@@fact $1 mac_a $(mac "$A" "ea$1")"
	emit "@@fact $1 mac_b $(mac "$C" "eb$1")"
	emit "@@fact $1 ifindex_a $(ifindex "$A" "ea$1")"
}

# Set-up of every scenario before tracer starts (what must happen before it
# starts, happens here); the actions after it started are in act_*.
SCEN=""
setup() {
	id=$1
	shift
	# Not in a subshell: the set-up's variables, fd 3 and jobs must stay.
	if "$@" >"$WORK/setup.log" 2>&1; then
		SCEN="$SCEN $id"
	else
		emit "@@skip $id set-up refused by this kernel: $(tail -n 3 "$WORK/setup.log" | tr '\n' ' ')"
	fi
}

# fdb: a MAC the bridge never saw is learned on port A, then moves to port B.
setup_fdb() {
	topo fdb 1 || return 1
	emit "@@fact fdb mac_new 02:6d:78:00:01:5a"
}
act_fdb() {
	A=${P}fdba C=${P}fdbc
	"$IP" -n "$A" link set eafdb address 02:6d:78:00:01:5a
	ping1 "$A" 10.250.1.2
	sleep 1
	"$IP" -n "$C" link set ebfdb address 02:6d:78:00:01:5a
	ping1 "$C" 10.250.1.1 1
}

# seed: learned before tracer starts; the first update after start is a move.
setup_seed() {
	topo seed 2 || return 1
	ping1 "$A" "$IPB"
	facts_macs seed
}
act_seed() {
	A=${P}seeda C=${P}seedc
	"$IP" -n "$C" link set ebseed address "$(mac "$A" easeed)"
	ping1 "$C" 10.250.2.1 1
}

# del: B's MAC leaves the FDB when its port leaves the bridge.
setup_del() {
	topo del 3 || return 1
	ping1 "$A" "$IPB"
	facts_macs del
}
act_del() { "$IP" -n "${P}delb" link set pbdel nomaster; }

# arp: A resolves B: ARP reply seen in A, A's neighbour entry REACHABLE.
setup_arp() {
	topo arp 4 || return 1
	facts_macs arp
}
act_arp() { ping1 "${P}arpa" 10.250.4.2; }

# retx: an established TCP flow A -> B whose replies are blackholed.
setup_retx() {
	topo retx 5 || return 1
	emit "@@fact retx port 5001"
	# Both ends read a FIFO kept open here (fd 3 and 4): nc ends the
	# connection when its stdin ends.
	rm -f "$WORK/retx.fifo" "$WORK/retx.sfifo"
	mkfifo "$WORK/retx.fifo" "$WORK/retx.sfifo"
	nsexec "$C" $BB nc -l -p 5001 <"$WORK/retx.sfifo" >/dev/null 2>&1 &
	echo $! >"$WORK/retx.server"
	exec 4>"$WORK/retx.sfifo"
	sleep 1
	nsexec "$A" $BB nc "$IPB" 5001 <"$WORK/retx.fifo" >/dev/null 2>&1 &
	echo $! >"$WORK/retx.client"
	exec 3>"$WORK/retx.fifo"
	echo hello >&3
	sleep 1
}
act_retx() {
	"$IP" -n "${P}retxc" route add blackhole 10.250.5.1/32
	echo "are you there?" >&3
}
end_retx() {
	exec 3>&- 4>&-
	kill "$(cat "$WORK/retx.client")" "$(cat "$WORK/retx.server")" 2>/dev/null
}

# rst: A connects to a port nothing listens on in B.
setup_rst() {
	topo rst 6 || return 1
	emit "@@fact rst port 7"
}
act_rst() { nsexec "${P}rsta" $BB nc -w 2 10.250.6.2 7 </dev/null >/dev/null 2>&1; }

# udp: datagrams to a closed UDP port in B are dropped (NO_SOCKET).
setup_udp() {
	topo udp 7 || return 1
	emit "@@fact udp port 9"
}
act_udp() { nsexec "${P}udpa" "$HELPER" udp-flood 10.250.7.2:9 3 >/dev/null; }

# flap: a vxlan with `proxy` and a static neighbour entry for local A
# answers ARP for it: the bridge flips A's MAC between pa and the vxlan.
setup_flap() {
	topo flap 8 || return 1
	"$IP" -n "$B" link add vxflap type vxlan id 4242 dstport 4789 local 127.0.0.1 proxy nolearning || return 1
	"$IP" -n "$B" link set vxflap master brflap || return 1
	"$IP" -n "$B" link set vxflap up
	"$IP" -n "$B" neigh add "$IPA" lladdr "$(mac "$A" eaflap)" dev vxflap nud permanent || return 1
	emit "@@fact flap vxlan vxflap"
	facts_macs flap
}
act_flap() {
	for _ in 1 2 3 4 5; do
		"$IP" -n "${P}flapc" neigh flush all
		ping1 "${P}flapc" 10.250.8.1 1
		sleep 0.2
	done
}

# conflict: a third namespace X on the bridge takes B's IP.
setup_conflict() {
	topo cfl 9 || return 1
	X="${P}cflx"
	addns "$X" || return 1
	"$IP" -n "$B" link add pccfl type veth peer name eccfl netns "$X" || return 1
	"$IP" -n "$B" link set pccfl master brcfl
	"$IP" -n "$B" link set pccfl up
	"$IP" -n "$X" link set eccfl up
	"$IP" -n "$X" addr add "$IPB/24" dev eccfl
	facts_macs cfl
	emit "@@fact cfl mac_x $(mac "$X" eccfl)"
}
act_conflict() {
	for _ in 1 2 3; do
		"$IP" -n "${P}cfla" neigh flush all
		ping1 "${P}cfla" 10.250.9.2
		sleep 0.2
	done
}

cleanup() {
	for ns in $NSLIST; do "$IP" netns del "$ns" 2>/dev/null; done
	rm -rf "$WORK"
}

main() {
	mkdir -p "$WORK"
	t0=$(date +%s)
	emit "@@MATRIX begin $(uname -r)"
	"$TRACER" check --json 2>"$WORK/check.err" | sed 's/^/@@check /' >>"$MATRIX_OUT"
	sed 's/^/@@stderr check: /' "$WORK/check.err" >>"$MATRIX_OUT"

	setup fdb setup_fdb
	setup seed setup_seed
	setup del setup_del
	setup arp setup_arp
	setup retx setup_retx
	setup rst setup_rst
	setup udp setup_udp
	setup flap setup_flap
	setup cfl setup_conflict

	args=""
	for ns in $NSLIST; do args="$args --netns $(inode "$ns")"; done
	# --kernel-log: the programs' diagnostic paths are loaded (and so
	# verified) on this kernel too, and what they say lands in the report.
	# shellcheck disable=SC2086 # one word per argument
	"$TRACER" run --kernel-log $args >"$WORK/out" 2>"$WORK/err" &
	tpid=$!
	i=0
	until grep '"probe_status"' "$WORK/out" 2>/dev/null | grep -q '"kfree_skb"'; do
		i=$((i + 1))
		if ! kill -0 $tpid 2>/dev/null; then
			emit "@@stderr tracer run exited before reporting its probes"
			break
		fi
		if [ $i -gt 600 ]; then
			emit "@@stderr tracer run did not report its probes within 300 s"
			break
		fi
		sleep 0.5
	done
	for id in $SCEN; do
		emit "@@run $id"
		log "scenario $id"
		case $id in
		fdb) act_fdb ;;
		seed) act_seed ;;
		del) act_del ;;
		arp) act_arp ;;
		retx) act_retx ;;
		rst) act_rst ;;
		udp) act_udp ;;
		flap) act_flap ;;
		cfl) act_conflict ;;
		esac
	done
	# Retransmits back off (0.2, 0.4, 0.8 s ...): a few seconds give several.
	sleep 4
	case " $SCEN " in *" retx "*) end_retx ;; esac
	kill -INT $tpid 2>/dev/null
	wait $tpid
	emit "@@exit $?"
	sed 's/^/@@tracer /' "$WORK/out" >>"$MATRIX_OUT"
	sed 's/^/@@stderr /' "$WORK/err" >>"$MATRIX_OUT"
	cleanup
	emit "@@seconds $(($(date +%s) - t0))"
	emit "@@MATRIX end"
}

if [ "$MATRIX_MODE" = vm ]; then
	export PATH=/bin:/sbin
	/bin/busybox mkdir -p /proc /sys /dev /run /tmp /var
	/bin/busybox mount -t proc proc /proc
	/bin/busybox mount -t sysfs sysfs /sys
	/bin/busybox mount -t devtmpfs devtmpfs /dev
	/bin/busybox --install -s /bin
	ln -sf /run /var/run
	mount -t tmpfs tmpfs /run
	mount -t tmpfs tmpfs /tmp
	mount -t tracefs tracefs /sys/kernel/tracing
	mount -t debugfs debugfs /sys/kernel/debug
	mount -t bpf bpf /sys/fs/bpf
	# Console quiet: the results go to ttyS1 (MATRIX_OUT).
	echo 1 >/proc/sys/kernel/printk
	if grep -q matrix.probe /proc/cmdline; then
		echo "@@MATRIX alive" >"$MATRIX_OUT"
		poweroff -f
	fi
	# What a tracer started before Docker loaded the bridge would see.
	"$TRACER" check --json 2>/dev/null | sed 's/^/@@premod /' >>"$MATRIX_OUT"
	while read -r m; do
		insmod "/lib/modules/$m.ko" || echo "@@stderr insmod $m failed" >>"$MATRIX_OUT"
	done </modules.list
	"$IP" link set lo up
	main
	sync
	poweroff -f
else
	main
fi
