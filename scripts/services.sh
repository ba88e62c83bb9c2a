#!/bin/sh
# Make sure the services the test suite uses for real are up: start them if they
# are installed but stopped, and fail with a clear message if they cannot be had.
set -u

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        echo "services: starting PostgreSQL" >&2
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
        sleep 2
    fi
fi
if ! redis_up; then
    if command -v redis-server >/dev/null 2>&1; then
        echo "services: starting Redis" >&2
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
        sleep 1
    fi
fi

ok=0
pg_up || { echo "services: PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started" >&2; ok=1; }
redis_up || { echo "services: Redis is not reachable on 127.0.0.1:6379 and could not be started" >&2; ok=1; }
exit $ok
