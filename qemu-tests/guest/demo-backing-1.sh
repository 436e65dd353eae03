# The main job, part 2, first boot: a device with a backing disk (/dev/vda), flushed, then the
# guest stops dead (SysRq 'b': no sync, no shutdown), as a power cut would stop it.
set -e
echo "== rxdskctl create --size 256M; 64 MiB of pseudo-random data on it"
DEV=$(rxdskctl create --size 256M)
rxdsk-guest-tests fill "$DEV" 64 7
SUM=$(dd if="$DEV" bs=1M count=64 iflag=direct status=none | sha256sum | cut -d' ' -f1)
echo "sha256 of the first 64 MiB: $SUM"
echo "== rxdskctl attach --journal 96M $DEV /dev/vda; rxdskctl flush $DEV"
rxdskctl attach --journal 96M "$DEV" /dev/vda
rxdskctl flush "$DEV"
echo "== the first 16 MiB rewritten, flushed again: atomically, through the journal"
rxdsk-guest-tests fill "$DEV" 16 8
rxdskctl list -o NAME,SIZE,USED,BACKING,MODE,JOURNAL,DIRTY
rxdskctl flush "$DEV"
SUM=$(dd if="$DEV" bs=1M count=64 iflag=direct status=none | sha256sum | cut -d' ' -f1)
echo "sha256 of the first 64 MiB now: $SUM"
echo "RXDSK-DATA demo-sha $SUM"
rxdskctl list -o NAME,SIZE,USED,BACKING,MODE,JOURNAL,DIRTY
echo "== rxdskctl inspect /dev/vda"
rxdskctl inspect /dev/vda
echo "== the guest is stopped dead now (SysRq b: no sync, no shutdown)"
echo b > /proc/sysrq-trigger
