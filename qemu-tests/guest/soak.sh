# soak.sh MINUTES [MIN_GIB]: fio verify (crc32c) with discards on two rxdsk devices at once,
# one per block size (512 and 4096), while background loops grow and shrink each device above
# the region fio uses. Runs rounds until MINUTES have passed and at least MIN_GIB (default 8)
# GiB have been written and verified; any fio error, resize failure or data mismatch fails it.
# Run by `cargo xtask soak --minutes N` (debug kernel).
MINUTES=${1:-10}
MIN_GIB=${2:-8}
START=$(date +%s)
END=$((START + MINUTES * 60))
WRITTEN_KB=0
ERRORS=0
ROUNDS=0
FLAG=/tmp/soak-resizing

# One block size: a device, its resizer, fio (every block discarded, written, verified).
one() {
    BS=$1
    DEV=$(rxdskctl create --size 1G --block-size "$BS") || { echo "soak: create failed"; return 1; }
    (
        i=0
        while [ -e $FLAG ]; do
            size=$((320 + (i % 8) * 96))M
            rxdskctl resize "$DEV" "$size" --force > /dev/null || { echo "soak: resize $DEV $size failed"; touch /tmp/soak-failed; }
            i=$((i + 1))
            sleep 1
        done
    ) &
    RESIZER=$!
    fio --name=soak$BS --filename="$DEV" --size=256M --loops=2 --rw=randtrimwrite \
        --bsrange="$BS"-64k --blockalign="$BS" --direct=1 --ioengine=io_uring --iodepth=16 \
        --verify=crc32c --verify_fatal=1 --output-format=terse --terse-version=3 \
        > /tmp/soak-$BS.out 2>&1
    echo $? > /tmp/soak-$BS.status
    while [ -e $FLAG ]; do sleep 1; done
    wait $RESIZER
    rxdskctl destroy "$DEV" || touch /tmp/soak-failed
}

while :; do
    rm -f /tmp/soak-failed
    touch $FLAG
    one 512 &
    P512=$!
    one 4096 &
    P4096=$!
    # Stop the resizers once both fio runs are done.
    while [ ! -e /tmp/soak-512.status ] || [ ! -e /tmp/soak-4096.status ]; do sleep 1; done
    rm -f $FLAG
    wait $P512 $P4096
    for BS in 512 4096; do
        STATUS=$(cat /tmp/soak-$BS.status)
        ERR=$(awk -F';' 'NF > 50 { print $5; exit }' /tmp/soak-$BS.out)
        KB=$(awk -F';' 'NF > 50 { print $47; exit }' /tmp/soak-$BS.out)
        if [ "$STATUS" != 0 ] || [ "${ERR:-1}" != 0 ]; then
            ERRORS=$((ERRORS + 1))
            echo "soak: round $((ROUNDS + 1)) block size $BS failed (fio exit $STATUS, error ${ERR:-?}):"
            tail -n 20 /tmp/soak-$BS.out
        fi
        WRITTEN_KB=$((WRITTEN_KB + ${KB:-0}))
        rm -f /tmp/soak-$BS.status
    done
    [ -e /tmp/soak-failed ] && ERRORS=$((ERRORS + 1))
    ROUNDS=$((ROUNDS + 1))
    echo "soak: round $ROUNDS: $((WRITTEN_KB / 1024)) MiB verified so far, $ERRORS errors, $(( ($(date +%s) - START) / 60 )) min"
    [ "$ERRORS" != 0 ] && break
    if [ "$(date +%s)" -ge "$END" ] && [ $((WRITTEN_KB / 1048576)) -ge "$MIN_GIB" ]; then break; fi
done
ELAPSED=$(( ($(date +%s) - START) / 60 ))
echo "SOAK: $((WRITTEN_KB / 1048576)) GiB verified in $ELAPSED minutes, $ERRORS errors"
[ "$ERRORS" = 0 ]
