# Boot 2 (config hook): after a reboot the config's devices are there; write files to the
# backed filesystem, then the clean shutdown flushes them.
. "$1/lib.sh"
. "$P/config.sh"
step boot_settled boot_settled
config_active
step write_files sh -c 'set -e; head -c 8M /dev/urandom > /srv/fast/data; echo hello > /srv/fast/hello; sha256sum /srv/fast/data /srv/fast/hello > /root/files.sha256; sync'
step logs_clean logs_clean
finish
