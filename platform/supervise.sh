#!/bin/sh
# Run a command, and run it again whenever it dies, until this script gets INT or TERM.
#
#   platform/supervise.sh python manage.py worker
#
# `make run` keeps its worker up with it: a worker that dies (a bug, the OOM killer) comes back
# after a pause that doubles from 1 s up to 30 s, and starts again from 1 s once a run lasted
# a minute. A command that exits with status 0 has finished (a worker does so only when told
# to stop, e.g. by the Ctrl-C that reached it directly): so does this script. On INT or TERM
# the signal is passed on as TERM and the script waits for the command to finish, so a worker
# lets its running executions end (a second Ctrl-C reaches it directly and makes it leave them
# to the next worker). Production uses a real supervisor instead (systemd, compose, a PaaS:
# see platform/README.md).
set -u

stopping=0
child=""
pause=""
on_signal() {
    stopping=1
    if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; fi
    if [ -n "$pause" ]; then kill "$pause" 2>/dev/null; fi
}
trap on_signal INT TERM

delay=1
while [ "$stopping" = 0 ]; do
    started=$(date +%s)
    "$@" &
    child=$!
    # A trapped signal interrupts `wait`: keep waiting until the command has really ended.
    status=0
    wait "$child" || status=$?
    while kill -0 "$child" 2>/dev/null; do
        status=0
        wait "$child" || status=$?
    done
    child=""
    if [ "$stopping" = 1 ] || [ "$status" = 0 ]; then break; fi
    if [ $(( $(date +%s) - started )) -ge 60 ]; then delay=1; fi
    echo "supervise: '$*' exited with status $status; starting it again in ${delay}s" >&2
    sleep "$delay" &
    pause=$!
    wait "$pause" 2>/dev/null || true
    pause=""
    delay=$(( delay * 2 > 30 ? 30 : delay * 2 ))
done
exit 0
