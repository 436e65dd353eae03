# The tiering bench, run by `cargo xtask bench` (xtask/src/bench.rs, TieringPlan): in one
# boot, with the same cache size over the same slow device ($DISK, a virtio disk) and the same
# fio workloads, one target after the other:
#   rxdsk     its memory limit as the cache (create --mem-limit, attach $DISK; 2Q eviction)
#   dm-cache  smq policy, writeback, 32 KiB cache blocks, cache and metadata on brd ramdisks
#   bcache    cache set on a brd ramdisk (16 KiB buckets, 4 KiB blocks), backing $DISK;
#             Debian's defaults (writethrough, 4 MiB sequential cutoff), congestion bypass off
# Per target: a fill of the region through the cache (1 MiB writes), a sequential scan (1 MiB
# reads), 4 KiB Zipf reads replayed from the host's traces (fio read_iolog, the same offsets
# for every target): $TRACES/warm.iolog, then $TRACES/zipf.iolog (measured), then a second
# scan and $TRACES/zipf-after-scan.iolog (measured: what the scan cost the hot set). Prints
#   RXDSK-DATA tiering LABEL PHASE HITS MISSES FIO-JSON
# HITS and MISSES are the deltas of the cache's own read counters over a Zipf run (rxdsk:
# cache_stat; dm-cache: dmsetup status; bcache: stats_total, bypassed reads counted in), "-"
# for a scan. A peer that cannot be set up:
#   RXDSK-DATA tiering-skip LABEL REASON
# Environment: DISK, REGION_MB (the span the scans touch), CACHE_MB, TRACES.
DISK=${DISK:-/dev/vda}
REGION_MB=${REGION_MB:-256}
CACHE_MB=${CACHE_MB:-32}
TRACES=${TRACES:-/etc/rxdsk-tiering}
# The guest has no udev: dmsetup makes the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1

fail() {
	echo "bench-tiering: $*" >&2
	exit 1
}

one_line() { tr '\n' ' ' | sed 's/  */ /g; s/ $//'; }

# fio over $DEV, which must be a block device (fio makes a regular file at a missing path);
# its JSON goes to /tmp/tier.json.
run_fio() { # name fio-args...
	[ -b "$DEV" ] || fail "$DEV is not a block device"
	name=$1
	shift
	fio --name="$name" --direct=1 --ioengine=psync --output-format=json --output=/tmp/tier.json \
		"$@" > /dev/null || fail "fio $name on $DEV ($LABEL) failed"
}

sequential() { # name rw: 1 MiB over the region
	run_fio "$1" --filename="$DEV" --size="${REGION_MB}M" --rw="$2" --bs=1M
}

replay() { # name: the trace $TRACES/name.iolog onto $DEV
	[ -f "$TRACES/$1.iolog" ] || fail "no trace $TRACES/$1.iolog"
	run_fio "$1" --read_iolog="$TRACES/$1.iolog" --replay_redirect="$DEV"
}

report() { # phase hits misses
	echo "RXDSK-DATA tiering $LABEL $1 $2 $3 $(one_line < /tmp/tier.json)"
}

# A replayed trace between two readings of the target's read counters ("hits misses").
measure() { # trace
	before=$(counters_$ID) || fail "$LABEL: no read counters"
	replay "$1"
	after=$(counters_$ID) || fail "$LABEL: no read counters"
	set -- "$1" $before $after
	[ $# = 5 ] || fail "$LABEL: read counters '$before' '$after'"
	report "$1" $(($4 - $2)) $(($5 - $3))
}

# rxdsk: the limit is a cache size once the device has a backing device.
setup_rxdsk() {
	DEV=$(rxdskctl create --size "${REGION_MB}M" --block-size 4096 --mem-limit "${CACHE_MB}M" 2> /tmp/tier.err) ||
		{ REASON="create: $(cat /tmp/tier.err)"; return 1; }
	out=$(rxdskctl attach "$DEV" "$DISK" 2>&1) || { REASON="attach: $out"; return 1; }
	set -- $(cat "/sys/block/${DEV#/dev/}/rxdsk/cache_stat")
	[ "$7" = 1 ] || { REASON="the limit is not a cache size (cache_stat: $*)"; return 1; }
}
counters_rxdsk() {
	stat=$(cat "/sys/block/${DEV#/dev/}/rxdsk/cache_stat") || return 1
	set -- $stat
	echo "$1 $2"
}
settle_rxdsk() { rxdskctl flush "$DEV" > /dev/null; }
state_rxdsk() { echo "cache_stat $(cat "/sys/block/${DEV#/dev/}/rxdsk/cache_stat")"; }
teardown_rxdsk() { rxdskctl destroy "$DEV"; }

# dm-cache: cache <metadata> <cache> <origin> <block sectors> <features> <policy> <args>.
setup_dmcache() {
	command -v dmsetup > /dev/null || { REASON="no dmsetup in the guest"; return 1; }
	[ -b /dev/ram0 ] && [ -b /dev/ram1 ] || { REASON="no brd ramdisks ($BRD)"; return 1; }
	table="0 $(cat "/sys/block/${DISK#/dev/}/size") cache /dev/ram1 /dev/ram0 $DISK 64 1 writeback smq 0"
	out=$(dmsetup --noudevsync create tier-dmcache --table "$table" 2>&1) ||
		{ REASON="dmsetup create: $out"; return 1; }
	DEV=/dev/mapper/tier-dmcache
}
counters_dmcache() {
	# 0 LEN cache MDBS MDUSED/MDTOTAL BS USED/TOTAL READ-HITS READ-MISSES ...
	dmsetup status tier-dmcache | awk '$3 == "cache" { print $8, $9; ok = 1 } END { exit !ok }'
}
settle_dmcache() { :; }
state_dmcache() { dmsetup status tier-dmcache; }
teardown_dmcache() { dmsetup --noudevsync remove tier-dmcache; }

# bcache: stats_total takes the per-event counters in every 300/22 s (drivers/md/bcache/
# stats.c): a reading waits for the next such tick after the I/O (15 s at most, if none came).
setup_bcache() {
	command -v make-bcache > /dev/null ||
		{ REASON="no make-bcache in the guest (bcache-tools not installed on the host)"; return 1; }
	[ -e /sys/fs/bcache/register ] || { REASON="no /sys/fs/bcache (CONFIG_BCACHE)"; return 1; }
	[ -b /dev/ram2 ] || { REASON="no brd ramdisk ($BRD)"; return 1; }
	out=$(make-bcache --bucket 16k --block 4k -C /dev/ram2 -B "$DISK" 2>&1) ||
		{ REASON="make-bcache: $out"; return 1; }
	for dev in /dev/ram2 "$DISK"; do
		echo "$dev" 2> /dev/null > /sys/fs/bcache/register ||
			{ REASON="register $dev: $(dmesg | grep bcache | tail -n 1)"; return 1; }
	done
	for _ in $(seq 20); do
		[ -b /dev/bcache0 ] && [ -e /sys/block/bcache0/bcache/cache ] && break
		sleep 1
	done
	[ -e /sys/block/bcache0/bcache/cache ] || { REASON="bcache0 not attached to its cache set"; return 1; }
	CSET=$(basename "$(readlink -f /sys/block/bcache0/bcache/cache)")
	# Latency-based bypass would send reads around the cache whenever TCG is slow.
	echo 0 > "/sys/fs/bcache/$CSET/congested_read_threshold_us"
	echo 0 > "/sys/fs/bcache/$CSET/congested_write_threshold_us"
	DEV=/dev/bcache0
}
bcache_reads() {
	s=/sys/block/bcache0/bcache/stats_total
	echo "$(($(cat $s/cache_hits) + $(cat $s/cache_bypass_hits)))" \
		"$(($(cat $s/cache_misses) + $(cat $s/cache_bypass_misses)))"
}
counters_bcache() {
	first=$(bcache_reads) || return 1
	for _ in $(seq 15); do
		sleep 1
		now=$(bcache_reads) || return 1
		[ "$now" != "$first" ] && break
	done
	echo "$now"
}
settle_bcache() { :; }
state_bcache() {
	echo "cache_available_percent $(cat "/sys/fs/bcache/$CSET/cache_available_percent")," \
		"bypassed $(cat /sys/block/bcache0/bcache/stats_total/bypassed)"
}
teardown_bcache() {
	echo 1 > /sys/block/bcache0/bcache/stop
	echo 1 > "/sys/fs/bcache/$CSET/unregister"
}

bench_target() { # id label
	ID=$1
	LABEL=$2
	# No superblock or header of the previous target may be found on the disk.
	dd if=/dev/zero of="$DISK" bs=1M count=4 oflag=direct status=none || fail "cannot wipe $DISK"
	REASON=
	if ! setup_$ID; then
		[ "$ID" = rxdsk ] && fail "rxdsk: $REASON"
		echo "RXDSK-DATA tiering-skip $LABEL $(echo "$REASON" | one_line)"
		return 0
	fi
	echo "bench-tiering: $LABEL on $DEV"
	sequential fill write
	settle_$ID || fail "$LABEL: settle after the fill"
	sequential scan read
	report scan - -
	replay warm
	measure zipf
	sequential scan2 read
	measure zipf-after-scan
	# For the console log: how the cache ended.
	echo "bench-tiering: $LABEL: $(state_$ID)"
	teardown_$ID || fail "$LABEL: teardown"
}

[ -b "$DISK" ] || fail "$DISK missing: the tiering bench's slow device"
# Three ramdisks of the cache size: dm-cache's cache and metadata, bcache's cache set.
BRD=$(modprobe brd rd_nr=3 rd_size=$((CACHE_MB * 1024)) max_part=0 2>&1) && BRD=loaded
bench_target rxdsk rxdsk
bench_target dmcache dm-cache
bench_target bcache bcache
