# Boot 1: install the kernel packages, then rxdskctl and rxdsk-dkms (DKMS builds rxdsk.ko in
# the guest), and use what they installed.
. "$1/lib.sh"
export DEBIAN_FRONTEND=noninteractive
echo "# kernel $(uname -r) $(uname -v)"
step boot_settled boot_settled
step rustc_matches_kernel_build sh -c "rustc -vV | diff - $P/host-rustc-vV && sha256sum -c $P/host-rustc.sha256"
step install_kernel_packages apt-get install -y -q --no-install-recommends \
    "$P"/debs/linux-image-*.deb "$P"/debs/linux-headers-*.deb "$P"/debs/linux-lib-rust-*.deb
step install_rxdskctl apt-get install -y -q --no-install-recommends "$P"/debs/rxdskctl_*.deb
# The DKMS build of rxdsk.ko happens in rxdsk-dkms' postinst: this step's time is its time.
step install_rxdsk_dkms sh -c "apt-get install -y -q --no-install-recommends $P/debs/rxdsk-dkms_*.deb; rc=\$?; cat /var/lib/dkms/rxdsk/*/build/make.log 2>/dev/null | tail -n 20; exit \$rc"
step dkms_reads_kernel_config sh -c 'grep -x CONFIG_RUST=y /lib/modules/$(uname -r)/build/.config'
step dkms_status sh -c 'dkms status rxdsk; dkms status rxdsk | grep -q "^rxdsk/.*, $(uname -r), [^:]*: installed"'
step module_installed sh -c 'ls -l /lib/modules/$(uname -r)/updates/dkms/rxdsk.ko*'
# Nothing has loaded the module yet: create loads it (modprobe rxdsk, as zramctl does for
# zram); a user is told that only root can.
step module_not_loaded_yet sh -c '! grep "^rxdsk " /proc/modules && test ! -e /dev/rxdsk-control'
step create_as_user_says_only_root_loads sh -c 'out=$(runuser -u nobody -- rxdskctl create --size 16M 2>&1) && exit 1; echo "$out"; echo "$out" | grep -q "only root (CAP_SYS_MODULE) can load it" && ! grep "^rxdsk " /proc/modules'
step create_loads_the_module sh -c 'set -e; dev=$(rxdskctl create --size 16M); grep "^rxdsk " /proc/modules; test -c /dev/rxdsk-control; test -b "$dev"; rxdskctl destroy "$dev"'
step modprobe_rxdsk sh -c 'modprobe rxdsk && grep "^rxdsk " /proc/modules && test -c /dev/rxdsk-control'
step module_dependencies_loaded sh -c 'deps=$(modinfo -F depends rxdsk | tr , " "); echo "depends: $deps"; for d in $deps; do grep -q "^$d " /proc/modules || { echo "$d not loaded"; exit 1; }; done'
step rxdskctl_version rxdskctl version
step rxdskctl_device sh -c 'set -e; dev=$(rxdskctl create --size 64M); rxdskctl list; mkfs.ext4 -q "$dev"; rxdskctl destroy "$dev"'
# list, stats and version read sysfs: any user may run them.
step queries_as_user sh -c 'set -e; dev=$(rxdskctl create --size 16M); runuser -u nobody -- rxdskctl list -J | grep "\"$dev\""; runuser -u nobody -- rxdskctl stats -J "$dev" | grep "\"pages\": 0"; runuser -u nobody -- rxdskctl version | grep "^rxdsk module "; rxdskctl destroy "$dev"'
# As a user: root's `man` would cache a cat page in /var/cache/man, which man-db (not the
# package) expires a week after its last use, and the purge check would find it.
step man_page sh -c 'runuser -u nobody -- man -P cat rxdskctl 2>&1 | grep "Set up and control rxdsk"'
step bash_completion bash -c '. /usr/share/bash-completion/bash_completion && _completion_loader rxdskctl; complete -p rxdskctl'
. "$P/config.sh"
config_write
step logs_clean logs_clean
# For the record (what this kernel config costs systemd): the boot's warnings.
journalctl -b -p warning --no-pager -q | grep -v 'xtask-guest' | sed 's/^/# journal: /'
finish
