# soak.sh MINUTES [MIN_GIB]: fio verify (crc32c) with discards on rxdsk devices of both block sizes while
# a background loop grows and shrinks each device above the region fio uses. Runs rounds until
# MINUTES have passed and at least 8 GiB have been written and verified; any fio error, resize
# failure or data mismatch fails it. Run by `cargo xtask soak --minutes N` (debug kernel).
MINUTES=${1:-10}
MIN_GIB=${2:-8}
START=$(date +%s)
END=$((START + MINUTES * 60))
WRITTEN_KB=0
ERRORS=0
ROUNDS=0
FLAG=/tmp/soak-resizing
while :; do
    for BS in 512 4096; do
        DEV=$(rxdskctl create --size 1G --block-size $BS) || { echo "soak: create failed"; exit 1; }
        touch $FLAG
        (
            i=0
            while [ -e $FLAG ]; do
                size=$((320 + (i % 8) * 96))M
                rxdskctl resize "$DEV" "$size" --force > /dev/null || { echo "soak: resize $DEV $size failed"; touch /tmp/soak-resize-failed; }
                i=$((i + 1))
                sleep 1
            done
        ) &
        RESIZER=$!
        # randtrimwrite: every block is discarded, then written, then verified.
        OUT=$(fio --name=soak --filename="$DEV" --size=256M --loops=2 --rw=randtrimwrite \
            --bsrange=$BS-64k --blockalign=$BS --direct=1 --ioengine=io_uring --iodepth=16 \
            --verify=crc32c --verify_fatal=1 --output-format=terse --terse-version=3 2>&1)
        STATUS=$?
        rm -f $FLAG
        wait $RESIZER
        ERR=$(echo "$OUT" | awk -F';' 'NF > 50 { print $5; exit }')
        KB=$(echo "$OUT" | awk -F';' 'NF > 50 { print $47; exit }')
        if [ "$STATUS" != 0 ] || [ "${ERR:-1}" != 0 ] || [ -e /tmp/soak-resize-failed ]; then
            ERRORS=$((ERRORS + 1))
            echo "soak: round $ROUNDS block size $BS failed (fio exit $STATUS, error ${ERR:-?}):"
            echo "$OUT" | tail -n 20
        fi
        WRITTEN_KB=$((WRITTEN_KB + ${KB:-0}))
        rxdskctl destroy "$DEV" || ERRORS=$((ERRORS + 1))
        ROUNDS=$((ROUNDS + 1))
        echo "soak: round $ROUNDS (block size $BS): $((WRITTEN_KB / 1048576)) GiB verified so far, $ERRORS errors"
    done
    NOW=$(date +%s)
    if [ "$ERRORS" != 0 ]; then break; fi
    if [ "$NOW" -ge "$END" ] && [ $((WRITTEN_KB / 1048576)) -ge "$MIN_GIB" ]; then break; fi
done
ELAPSED=$(( ($(date +%s) - START) / 60 ))
echo "SOAK: $((WRITTEN_KB / 1048576)) GiB verified in $ELAPSED minutes, $ERRORS errors"
[ "$ERRORS" = 0 ]
