# Boot 3 (config hook): the files written before the clean reboot survived.
. "$1/lib.sh"
. "$P/config.sh"
step boot_settled boot_settled
config_active
step files_survived sha256sum -c /root/files.sha256
step logs_clean logs_clean
finish
