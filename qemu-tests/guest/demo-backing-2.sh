# The main job, part 2, second boot on the same disk: restore the device and compare; then a
# device four times bigger than its memory limit on the same disk (the limit as a cache size).
set -e
WANT="$1"
echo "== a fresh guest; rxdskctl inspect /dev/vda"
rxdskctl inspect /dev/vda
echo "== rxdskctl create --backing /dev/vda (lazy: pages come in on first access)"
DEV=$(rxdskctl create --backing /dev/vda)
rxdskctl list -o NAME,SIZE,USED,BACKING,MODE,JOURNAL,UNLOADED
SUM=$(dd if="$DEV" bs=1M count=64 iflag=direct status=none | sha256sum | cut -d' ' -f1)
echo "== after reading 64 MiB"
rxdskctl list -o NAME,SIZE,USED,BACKING,MODE,JOURNAL,UNLOADED
echo "sha256 of the first 64 MiB after the restore: $SUM"
echo "                                  before: $WANT"
[ "$SUM" = "$WANT" ] || { echo "DIFFERENT: the restore lost data"; exit 1; }
echo "== identical: the data survived the stop"
rxdskctl detach "$DEV"
rxdskctl destroy "$DEV"

echo
echo "== a device four times bigger than its memory: 256 MiB on /dev/vda, --mem-limit 64M"
echo "   (with a backing device the limit is a cache size: clean pages evicted and read back"
echo "   on demand, dirty ones flushed first, point in time)"
DEV=$(rxdskctl create --size 256M --mem-limit 64M)
rxdskctl attach --journal 96M "$DEV" /dev/vda
rxdsk-guest-tests fill "$DEV" 256 9
SUM=$(dd if="$DEV" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
rxdskctl list -o NAME,SIZE,USED,MEM-LIMIT,BACKING,DIRTY,UNLOADED
rxdskctl stats "$DEV" | tail -n 8
echo "== flushed, destroyed, restored with the same limit; all 256 MiB read back through 64 MiB"
rxdskctl flush "$DEV" > /dev/null
rxdskctl destroy "$DEV"
DEV=$(rxdskctl create --backing /dev/vda --mem-limit 64M)
SUM2=$(dd if="$DEV" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)
rxdskctl list -o NAME,SIZE,MEM-LIMIT,UNLOADED,CACHED,HIT-RATIO
echo "sha256 of all 256 MiB: written $SUM"
echo "                       restored $SUM2"
[ "$SUM" = "$SUM2" ] || { echo "DIFFERENT: the cache lost data"; exit 1; }
echo "== identical; memory in use now: $(cat /sys/block/${DEV#/dev/}/rxdsk/mem_used) bytes, of a 64 MiB limit:"
echo "   data read once is read past the cache ($(rxdskctl stats -J "$DEV" | sed -n 's/.*"read-bypasses": \([0-9]*\).*/\1/p') reads), so a scan pushes nothing out;"
echo "   read again lately, it is cached (the first 32 MiB three times: past the cache, into it, hits):"
for i in 1 2 3; do dd if="$DEV" of=/dev/null bs=1M count=32 iflag=direct status=none; done
rxdskctl list -o NAME,MEM-LIMIT,CACHED,HIT-RATIO
rxdskctl destroy "$DEV"
echo
echo "== writearound: writes go to the disk only, RAM keeps what is read"
DEV=$(rxdskctl create --size 256M --mem-limit 64M)
rxdskctl attach --mode writearound "$DEV" /dev/vda
rxdsk-guest-tests fill "$DEV" 128 11
rxdskctl list -o NAME,MODE,USED,UNLOADED
dd if="$DEV" of=/dev/null bs=1M count=32 iflag=direct status=none
dd if="$DEV" of=/dev/null bs=1M count=32 iflag=direct status=none
dd if="$DEV" of=/dev/null bs=1M count=32 iflag=direct status=none
echo "   after reading 32 MiB three times (read past the cache, cached, hit):"
rxdskctl list -o NAME,MODE,USED,CACHED,HIT-RATIO
rxdskctl destroy "$DEV"
