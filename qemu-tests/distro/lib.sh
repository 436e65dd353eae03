# Helpers of the distro test scripts: each step is one KTAP result; its output becomes
# diagnostics ("# ...", shown by the host when the step fails) and its time an RXDSK-DATA line.
P=${1:-/run/rxdsk-payload}
n=0
failed=0
step() {
    name=$1
    shift
    n=$((n + 1))
    start=$(date +%s)
    out=$("$@" 2>&1)
    rc=$?
    printf '%s\n' "$out" | tail -n 60 | sed 's/^/# /'
    if [ $rc -eq 0 ]; then
        echo "ok $n $name"
    else
        echo "not ok $n $name"
        failed=$((failed + 1))
    fi
    echo "RXDSK-DATA time $name $(($(date +%s) - start))"
}
skip() {
    n=$((n + 1))
    echo "ok $n $1 # SKIP $2"
}
finish() {
    echo "1..$n"
    exit $((failed > 0))
}
# The boot settled, and nothing failed on the way.
boot_settled() {
    state=$(timeout 600 systemctl is-system-running --wait)
    echo "system state: $state"
    systemctl --failed --no-legend --no-pager
    [ "$state" = running ]
}
# No unit failed and the journal holds no error of this boot.
logs_clean() {
    systemctl --failed --no-legend --no-pager | grep . && return 1
    errors=$(journalctl -b -p err --no-pager -q)
    [ -z "$errors" ] || { echo "$errors"; return 1; }
}
