#!/usr/bin/env bash
# `make test`: lint, then the whole pytest suite against real PostgreSQL and Redis.
# `make bench` (scripts/test.sh --bench): the benchmarks in bench/ against the same services.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_PYTHON=${VENV_PYTHON:-.venv/bin/python}
. scripts/services.sh
ensure_postgres
ensure_redis
# The tests make their own databases on this server; show where, without credentials.
echo "services: PostgreSQL ${DATABASE_URL##*@}, Redis ${REDIS_URL##*@}"

if [ "${1:-}" = "--bench" ]; then
    shift
    for bench in bench/*.py; do
        # Helpers (support.py, the bare app webhook.py serves) are not benchmarks of their own.
        case "$bench" in bench/support.py|bench/bare_app.py) continue ;; esac
        echo "== $bench"
        "$VENV_PYTHON" "$bench" "$@"
    done
    exit 0
fi

# The console's browser tests drive the distribution's Chromium (Playwright never downloads one).
if [ ! -x /usr/bin/chromium ]; then
    _apt_install chromium \
        || echo "test: /usr/bin/chromium missing; browser tests skip here and fail on CI" >&2
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec "$VENV_PYTHON" -m pytest "$@"
