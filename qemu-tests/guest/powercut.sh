# Power-cut tests, run by `cargo xtask test` (and `cargo xtask power-cut`). A first boot per
# variant ("cut VARIANT", its disk is /dev/vda) prepares an image and prints RXDSK-DATA
# powercut-kill at the moment to cut the power: the host kills QEMU at once (SIGKILL, no
# shutdown). One more boot with every variant's disk ("check VARIANT DISK SHA-A SHA-B" for
# each) restores and compares. Variants:
#   after-flush            killed right after a flush returned: the restore gives its data
#   journal-before-commit  killed while a journaled flush writes its journal: the previous image
#   journal-after-commit   killed after the journal's commit, during the copy in place: the new
#   no-journal             killed during a flush without journal: the restore refuses (torn),
#                          --force restores
#   filesystem             ext2 on a device with a journal: files written, unmounted, flushed,
#                          killed; the restored device passes fsck and holds the same files
#   stamp-*, ext4-live     under live use: a writer runs through the flushes and the cut (see
#                          `rxdsk-guest-tests powercut`, qemu-tests/src/durability.rs);
#                          stamp-journal-cache on a 16 MiB device with a 2 MiB memory limit
#                          (eviction all through the run)
set -e
MODE=$1
VARIANT=$2
DISK=/dev/vda
MIB=1048576

sha() {
	dd if="$1" bs=1M count=128 iflag=direct status=none | sha256sum | cut -d' ' -f1
}

stat_of() { # stat_of DEV KEY: a number from `rxdskctl stats -J`
	rxdskctl stats -J "$1" | sed -n "s/.*\"$2\": *\([0-9]*\).*/\1/p"
}

state() {
	rxdskctl inspect -J "$DISK" | sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p'
}

generation() {
	rxdskctl inspect -J "$DISK" | sed -n 's/.*"generation": *\([0-9]*\).*/\1/p'
}

fail() {
	echo "powercut $VARIANT: $*"
	exit 1
}

# The power cuts under live use are in the guest test binary (durability.rs).
case "$VARIANT" in
stamp-* | ext4-live)
	shift 2
	exec rxdsk-guest-tests powercut "$MODE" "$VARIANT" "$@"
	;;
esac

case "$MODE" in
cut)
	if [ "$VARIANT" = filesystem ]; then
		DEV=$(rxdskctl create --size 64M)
		rxdskctl attach --journal 32M "$DEV" "$DISK"
		mke2fs -q -b 4096 "$DEV"
		mkdir -p /mnt/fs
		mount -t ext2 "$DEV" /mnt/fs
		cp -a /usr/bin /mnt/fs/bin
		dd if=/dev/zero of=/mnt/fs/data bs=1M count=8 status=none
		rxdsk-guest-tests fill /mnt/fs/data 8 3
		dd if=/dev/zero of=/mnt/fs/zeros bs=1M count=4 status=none
		SUMS=$(cd /mnt/fs && find . -type f | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
		umount /mnt/fs
		rxdskctl flush "$DEV"
		echo "RXDSK-DATA powercut-sha $SUMS -"
		echo "RXDSK-DATA powercut-kill"
		sleep 600
	fi
	DEV=$(rxdskctl create --size 192M)
	rxdsk-guest-tests fill "$DEV" 128 1
	A=$(sha "$DEV")
	case "$VARIANT" in
	after-flush) rxdskctl attach "$DEV" "$DISK" ;;
	no-journal) rxdskctl attach "$DEV" "$DISK" ;;
	*) rxdskctl attach --journal 160M "$DEV" "$DISK" ;;
	esac
	rxdskctl flush "$DEV"
	if [ "$VARIANT" = after-flush ]; then
		echo "RXDSK-DATA powercut-sha $A -"
		echo "RXDSK-DATA powercut-kill"
		sleep 600
	fi
	# A second generation over the whole first 128 MiB, cut while it is flushed.
	rxdsk-guest-tests fill "$DEV" 128 2
	B=$(sha "$DEV")
	echo "RXDSK-DATA powercut-sha $A $B"
	BASE=$(stat_of "$DEV" written-back-bytes)
	# In the background, quiet: the marker below must start a console line.
	rxdskctl flush "$DEV" >/dev/null 2>&1 &
	FLUSH=$!
	# Wait for the moment, but not past the flush's end (the check then says the cut missed).
	case "$VARIANT" in
	journal-after-commit)
		until [ "$(state)" = journaled ] || ! kill -0 $FLUSH 2>/dev/null; do :; done
		;;
	*)
		# 32 MiB into the flush: before a journal's commit (it is 128 MiB long).
		until [ "$(stat_of "$DEV" written-back-bytes)" -ge $((BASE + 32 * MIB)) ] ||
			! kill -0 $FLUSH 2>/dev/null; do :; done
		;;
	esac
	echo "RXDSK-DATA powercut-kill"
	sleep 600
	;;
check)
	DISK=$3
	A=$4
	B=$5
	MNT=/mnt/$VARIANT
	rxdskctl inspect "$DISK"
	case "$VARIANT" in
	filesystem)
		DEV=$(rxdskctl create --backing "$DISK")
		e2fsck -fn "$DEV" || fail "e2fsck found errors"
		mkdir -p "$MNT"
		mount -t ext2 "$DEV" "$MNT"
		GOT=$(cd "$MNT" && find . -type f | sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
		umount "$MNT"
		echo "files: $GOT, before the cut: $A"
		[ "$GOT" = "$A" ] || fail "the files differ"
		exit 0
		;;
	after-flush) WANT=$A ;;
	journal-before-commit)
		[ "$(state)" = clean ] && [ "$(generation)" = 1 ] || fail "the image is not generation 1, clean"
		WANT=$A
		;;
	journal-after-commit)
		[ "$(state)" = journaled ] || fail "the cut did not land after the commit"
		WANT=$B
		;;
	no-journal)
		[ "$(state)" = flushing ] || fail "the image does not say its flush was interrupted"
		if OUT=$(rxdskctl create --backing "$DISK" 2>&1); then
			fail "a torn image was restored without --force: $OUT"
		fi
		echo "refused as it should be: $OUT"
		echo "$OUT" | grep -q "generation 2 did not complete" || fail "the refusal does not name the generation"
		DEV=$(rxdskctl create --backing "$DISK" --force)
		echo "restored with --force: $DEV"
		exit 0
		;;
	esac
	DEV=$(rxdskctl create --backing "$DISK")
	GOT=$(sha "$DEV")
	echo "restored: $GOT"
	echo "wanted:   $WANT"
	[ "$GOT" = "$WANT" ] || fail "the restored data differs"
	rxdskctl inspect "$DISK"
	[ "$(state)" = clean ] || fail "the image is not clean after the restore"
	;;
esac
