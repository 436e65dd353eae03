# The main job's workload: shows what rxdsk offers so far.
set -e
echo "== rxdskctl version"
rxdskctl version
echo "== kernel: $(uname -r), $(nproc) vCPUs, accelerator: $rxdsk_accel"
echo "== control node"
ls -l /dev/rxdsk-control
echo "== block devices"
cat /proc/partitions
