# Last boot: purge the rxdsk packages; nothing of theirs may be left.
. "$1/lib.sh"
export DEBIAN_FRONTEND=noninteractive
step boot_settled boot_settled
step dkms_still_installed sh -c 'dkms status rxdsk | grep -q "installed"'
# The config boots left swap and a mount on rxdsk devices.
. "$P/config.sh"
config_stop
step purge apt-get purge -y -q rxdskctl rxdsk-dkms
step dkms_forgot_rxdsk sh -c 'out=$(dkms status rxdsk); echo "$out"; [ -z "$out" ]'
step modprobe_finds_no_rxdsk sh -c '! modprobe -n rxdsk'
step no_files_left sh -c 'left=$(find / -xdev \( -path /proc -o -path /sys -o -path /run \) -prune -o -name "*rxdsk*" -print); echo "$left"; [ -z "$left" ]'
step logs_clean logs_clean
finish
