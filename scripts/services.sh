# Sourced by scripts/test.sh: make sure PostgreSQL and Redis are reachable and export
# DATABASE_URL and REDIS_URL for the tests.
#
# Order of preference: the URLs already in the environment; the local servers on their standard
# ports; throwaway servers started here from the local binaries (installed from the distribution's
# packages when missing and we are root). initdb and pg_ctl refuse to run as root, so they run as
# the postgres user.

PG_STANDARD_PORT=${PG_STANDARD_PORT:-5432}
REDIS_STANDARD_PORT=${REDIS_STANDARD_PORT:-6379}
PG_THROWAWAY_PORT=${PG_THROWAWAY_PORT:-54329}
REDIS_THROWAWAY_PORT=${REDIS_THROWAWAY_PORT:-63799}
THROWAWAY_DIR=${THROWAWAY_DIR:-/tmp/recpo-test-services}

_py() { "$VENV_PYTHON" "$@"; }

_pg_answers() {  # $1: libpq URL
    _py - "$1" <<'PY' >/dev/null 2>&1
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
PY
}

_redis_answers() {  # $1: redis URL
    _py - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2).ping()
PY
}

_as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_apt_install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "services: installing $* from the distribution's packages" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        return 1
    fi
}

_pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
    if [ -n "${DATABASE_URL:-}" ]; then
        return 0
    fi
    if _pg_answers "postgresql://postgres@127.0.0.1:$PG_STANDARD_PORT/postgres"; then
        export DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_STANDARD_PORT/postgres"
        return 0
    fi
    local throwaway_url="postgresql://postgres@127.0.0.1:$PG_THROWAWAY_PORT/postgres"
    if ! _pg_answers "$throwaway_url"; then
        local bindir
        bindir=$(_pg_bindir)
        if [ -z "$bindir" ]; then
            _apt_install postgresql || { echo "services: no PostgreSQL server and none can be installed" >&2; return 1; }
            bindir=$(_pg_bindir)
        fi
        local data="$THROWAWAY_DIR/pg"
        mkdir -p "$THROWAWAY_DIR"
        if [ ! -f "$data/PG_VERSION" ]; then
            mkdir -p "$data"
            [ "$(id -u)" = 0 ] && chown postgres "$data"
            chmod 700 "$data"
            _as_postgres "$bindir/initdb" -D "$data" -U postgres -A trust >/dev/null || {
                echo "services: initdb failed in $data" >&2; return 1; }
        fi
        echo "services: starting a throwaway PostgreSQL on port $PG_THROWAWAY_PORT" >&2
        _as_postgres "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w \
            -o "-p $PG_THROWAWAY_PORT -k $data -c listen_addresses=127.0.0.1 -c fsync=off" start \
            >/dev/null || { echo "services: PostgreSQL did not start; see $data/server.log" >&2; return 1; }
    fi
    export DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_THROWAWAY_PORT/postgres"
}

ensure_redis() {
    if [ -n "${REDIS_URL:-}" ]; then
        return 0
    fi
    # Database 15 of the local server: the tests flush it, so keep real data elsewhere.
    if _redis_answers "redis://127.0.0.1:$REDIS_STANDARD_PORT/15"; then
        export REDIS_URL="redis://127.0.0.1:$REDIS_STANDARD_PORT/15"
        return 0
    fi
    if ! _redis_answers "redis://127.0.0.1:$REDIS_THROWAWAY_PORT/15"; then
        command -v redis-server >/dev/null || _apt_install redis-server || {
            echo "services: no Redis server and none can be installed" >&2; return 1; }
        mkdir -p "$THROWAWAY_DIR"
        echo "services: starting a throwaway Redis on port $REDIS_THROWAWAY_PORT" >&2
        redis-server --bind 127.0.0.1 --port "$REDIS_THROWAWAY_PORT" --save "" --appendonly no \
            --daemonize yes --dir "$THROWAWAY_DIR" --logfile "$THROWAWAY_DIR/redis.log" || return 1
        for _ in $(seq 50); do
            _redis_answers "redis://127.0.0.1:$REDIS_THROWAWAY_PORT/15" && break
            sleep 0.1
        done
        _redis_answers "redis://127.0.0.1:$REDIS_THROWAWAY_PORT/15" || {
            echo "services: Redis did not start; see $THROWAWAY_DIR/redis.log" >&2; return 1; }
    fi
    export REDIS_URL="redis://127.0.0.1:$REDIS_THROWAWAY_PORT/15"
}
