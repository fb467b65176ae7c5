# The egress proxy of one run: squid on 127.0.0.1:3128 inside this container, reached only through
# socat's Unix socket in /egress (the run's volume). Prints "socket ready" once the socket exists;
# the runner waits for that line and squid's "Accepting HTTP Socket connections".
set -eu
sock=/egress/proxy.sock
printf '%s' "$RUNNER_SQUID_CONF" > /tmp/squid.conf
squid -N -f /tmp/squid.conf &
squid_pid=$!
# fork: one process per connection, at most 32 at once (the container's process limit is 64)
socat "UNIX-LISTEN:$sock,fork,max-children=32,mode=0666,unlink-early,backlog=64" TCP4:127.0.0.1:3128 &
socat_pid=$!
while [ ! -S "$sock" ]; do
    kill -0 "$socat_pid" 2>/dev/null || { echo "runner-egress: socat did not start" >&2; exit 1; }
    sleep 0.02
done
echo "runner-egress: socket ready"
# Whichever ends first ends the proxy.
while kill -0 "$squid_pid" 2>/dev/null && kill -0 "$socat_pid" 2>/dev/null; do
    sleep 1
done
kill "$squid_pid" "$socat_pid" 2>/dev/null || true
echo "runner-egress: squid or socat stopped" >&2
exit 1
