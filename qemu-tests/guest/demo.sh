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
