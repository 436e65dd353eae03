# Boot-time setup (issue 14), written against the interface of branch `apply`: `rxdskctl apply`
# reads /etc/rxdsk.conf ([rxdN] sections: size, compression, swap-priority, backing, fs-type,
# mount-point); a systemd generator and rxdsk-setup@.service set the devices up at boot.
# HOOK: the host adds this file only when rxdskctl has an `apply` subcommand.
BACKING=/dev/disk/by-id/virtio-rxdsk-disk2
config_write() {
    step config_write sh -c "cat > /etc/rxdsk.conf <<CONF
[rxd0]
size = 256M
compression = lz4
swap-priority = 100

[rxd1]
size = 128M
backing = $BACKING
fs-type = ext4
mount-point = /srv/fast
CONF
rxdskctl apply"
}
config_active() {
    step swap_active sh -c 'swapon --show; swapon --show=NAME --noheadings | grep -qx /dev/rxd0'
    step filesystem_mounted sh -c 'findmnt /srv/fast && findmnt -n -o SOURCE /srv/fast | grep -qx /dev/rxd1'
    step setup_units_active sh -c 'systemctl status --no-pager "rxdsk-setup@*"; systemctl is-active rxdsk-setup@rxd0.service rxdsk-setup@rxd1.service'
}
