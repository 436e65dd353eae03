# The main job's workload: a device, a short verified fio run on it, its listing and stats.
set -e
echo "== rxdskctl version"
rxdskctl version
echo "== guest: kernel $(uname -r), $(nproc) vCPUs, accelerator $rxdsk_accel"
echo "== rxdskctl create --size 1G"
DEV=$(rxdskctl create --size 1G)
echo "$DEV"
echo "== fio: 128 MiB of 4k random writes with crc32c verify, then 4k random reads"
fio --name=demo-write --filename="$DEV" --rw=randwrite --bs=4k --size=128M --direct=1 \
    --ioengine=io_uring --iodepth=16 --verify=crc32c --verify_fatal=1 > /tmp/demo-write.txt
grep -E "^demo|IOPS|err=" /tmp/demo-write.txt
fio --name=demo-read --filename="$DEV" --rw=randread --bs=4k --size=128M --direct=1 \
    --ioengine=io_uring --iodepth=16 --runtime=3 --time_based > /tmp/demo-read.txt
grep -E "IOPS|err=" /tmp/demo-read.txt
rxdskctl list -o NAME,SIZE,USED
echo "== blkdiscard the first 64 MiB: their pages go back to the system"
blkdiscard -l 67108864 "$DEV"
echo "== rxdskctl list"
rxdskctl list
echo "== rxdskctl stats $DEV"
rxdskctl stats "$DEV"
echo "== rxdskctl resize $DEV 2G"
rxdskctl resize "$DEV" 2G
rxdskctl list -o NAME,SIZE,USED
echo "== rxdskctl destroy $DEV"
rxdskctl destroy "$DEV"
rxdskctl list
echo "== compression: the same 32 MiB of real files (a tar of /usr and /lib) on rxdsk and zram, zstd"
tar -cf - /usr /lib 2>/dev/null | head -c 33554432 > /tmp/corpus
modprobe zram num_devices=1
echo zstd > /sys/block/zram0/comp_algorithm
echo 64M > /sys/block/zram0/disksize
ZDEV=$(rxdskctl create --size 64M --compress zstd)
dd if=/tmp/corpus of=/dev/zram0 bs=1M oflag=direct status=none
dd if=/tmp/corpus of="$ZDEV" bs=1M oflag=direct status=none
echo "big bios on both CPUs: $(cut -d' ' -f10 "/sys/block/${ZDEV#/dev/}/rxdsk/mm_stat") chunks of 8 KiB of dd's 1 MiB writes were \
compressed by a helper on the other CPU (mm_stat's 10th number); zram compresses every page on the submitter's"
cmp -n 33554432 /tmp/corpus "$ZDEV" && echo "$ZDEV reads back the corpus byte for byte"
echo "== rxdskctl list -o NAME,SIZE,ALGORITHM,DATA,COMPR,TOTAL,RATIO $ZDEV"
rxdskctl list -o NAME,SIZE,ALGORITHM,DATA,COMPR,TOTAL,RATIO "$ZDEV"
set -- $(cat /sys/block/zram0/mm_stat)
TABLE=$((64 * 1048576 / 4096 * 16))
RTOTAL=$(rxdskctl list --raw -n -b -o TOTAL "$ZDEV")
echo "zram0 (zstd) mm_stat: DATA $1 COMPR $2 TOTAL $3, plus its table $TABLE (16 bytes per page, not in mm_stat)"
echo "memory for the same 32 MiB: rxdsk $RTOTAL bytes (ratio $(awk "BEGIN { printf \"%.3f\", 33554432 / $RTOTAL }")), \
zram $(($3 + TABLE)) bytes (ratio $(awk "BEGIN { printf \"%.3f\", 33554432 / ($3 + $TABLE) }"))"
echo "== rxdskctl stats $ZDEV (compression counters at the end)"
rxdskctl stats "$ZDEV" | tail -n 10
rxdskctl destroy "$ZDEV"
echo 1 > /sys/block/zram0/reset
echo "== NVMe-oF: rxdskctl export (loop transport: the host side in this same guest)"
grep -q " /sys/kernel/config " /proc/mounts || mount -t configfs none /sys/kernel/config
NDEV=$(rxdskctl create --size 256M)
rxdskctl export --transport loop --allow-host nqn.2026-12.io.rxdsk:demo-host "$NDEV"
rxdskctl list -o NAME,SIZE,EXPORT "$NDEV"
exec 3<>/dev/nvme-fabrics
echo "transport=loop,nqn=nqn.2026-12.io.rxdsk:rxd${NDEV#/dev/rxd},hostnqn=nqn.2026-12.io.rxdsk:demo-host,hostid=6e2a0d64-7278-4473-8b00-0000000000de" >&3
read -r ANSWER <&3; exec 3>&-
echo "connected: $ANSWER"
CTRL=nvme$(echo "$ANSWER" | sed 's/^instance=\([0-9]*\).*/\1/')
sleep 1
NS=$(ls /sys/class/nvme/$CTRL/ | grep -m1 '^nvme.*n1$' || true)
echo "the namespace: /dev/$NS, $(( $(cat /sys/block/$NS/size) / 2048 )) MiB; a 1 MiB write through it:"
head -c 1048576 /usr/bin/rxdskctl > /tmp/demo-mib
dd if=/tmp/demo-mib of=/dev/$NS bs=1M oflag=direct status=none
cmp -n 1048576 /tmp/demo-mib "$NDEV" && echo "$NDEV holds the same bytes"
echo 1 > /sys/class/nvme/$CTRL/delete_controller
sleep 1
rxdskctl unexport "$NDEV"
rxdskctl destroy "$NDEV"

echo
echo "== boot-time setup: rxdskctl apply realises a declarative configuration (rxdsk.conf)"
mkdir -p /tmp/demo-root/etc/rxdsk.conf.d
cat > /tmp/demo-root/etc/rxdsk.conf <<'CONF'
# compressed swap
[rxd20]
size = 128M
compress = zstd
swap-priority = 100
CONF
cat > /tmp/demo-root/etc/rxdsk.conf.d/50-scratch.conf <<'CONF'
# a raw device for an application
[rxd21]
size = 64M
block-size = 512
compress = lz4
CONF
echo "-- /etc/rxdsk.conf and /etc/rxdsk.conf.d/50-scratch.conf under /tmp/demo-root; first a dry run:"
rxdskctl apply --root /tmp/demo-root --dry-run
echo "-- apply --activate (a boot's systemd units do the activation instead):"
rxdskctl apply --root /tmp/demo-root --activate
cat /proc/swaps
echo "-- the same again: nothing to do"
rxdskctl apply --root /tmp/demo-root --activate
echo "-- a mistake in a drop-in is named by file and line, and nothing changes:"
echo "sise = 1G" >> /tmp/demo-root/etc/rxdsk.conf.d/50-scratch.conf
rxdskctl apply --root /tmp/demo-root || echo "(apply exited $?)"
swapoff /dev/rxd20
rxdskctl destroy /dev/rxd20 /dev/rxd21
