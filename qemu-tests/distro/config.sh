# Boot-time setup (issue 14): `rxdskctl apply` reads /etc/rxdsk.conf ([rxdN] sections: size,
# compress, swap-priority, backing, fs-type, mount-point); rxdsk-generator and
# rxdsk-setup@.service set the devices up at boot.
BACKING=/dev/disk/by-id/virtio-rxdsk-disk2
# The user's path: write the config, check it (a dry run plans without changing anything),
# reboot; the generator and rxdsk-setup@.service do the rest at boot.
config_write() {
    step config_write sh -c "set -e; cat > /etc/rxdsk.conf <<CONF
[rxd0]
size = 256M
compress = lz4
swap-priority = 100

[rxd1]
size = 128M
backing = $BACKING
fs-type = ext4
mount-point = /srv/fast
CONF
plan=\$(rxdskctl apply --dry-run)
echo \"\$plan\"
echo \"\$plan\" | grep -qx 'rxd0: would create 256M, lz4'
echo \"\$plan\" | grep -q '^rxd1: would create 128M'"
}
config_active() {
    step swap_active sh -c 'swapon --show; swapon --show=NAME --noheadings | grep -qx /dev/rxd0'
    step filesystem_mounted sh -c 'findmnt /srv/fast && findmnt -n -o SOURCE /srv/fast | grep -qx /dev/rxd1'
    step setup_units_active sh -c 'systemctl status --no-pager "rxdsk-setup@*"; systemctl is-active rxdsk-setup@rxd0.service && systemctl is-active rxdsk-setup@rxd1.service'
}
# Before the purge: the devices' users go first, as an administrator would do it.
config_stop() {
    step config_stop sh -c 'systemctl stop srv-fast.mount dev-rxd0.swap && systemctl stop "rxdsk-setup@*" && rm /etc/rxdsk.conf && systemctl daemon-reload'
}
