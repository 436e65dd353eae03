# The main job, part 2, second boot on the same disk: restore the device and compare.
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
