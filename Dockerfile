# The MMR adapter: one image for every role (api, worker, beat, setup); the compose service picks
# the role with its command, e.g. `serve --port 8000`, `worker`, `beat`, `setup`.
#
# Layout under /app is the repository's own (adapter/, mappings/, profiles/ side by side) and the
# package is installed in editable mode, so the code finds mappings/ and profiles/ the same way it
# does in a checkout. MMR_MAPPINGS_DIR / MMR_PROFILES_DIR say so explicitly as well.

# Python minor and Debian release pinned; patch releases still arrive with a rebuild.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    MMR_MAPPINGS_DIR=/app/mappings \
    MMR_PROFILES_DIR=/app/profiles

WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them. The list is
# read from pyproject.toml itself: there is no second copy to keep in step. Every dependency ships
# wheels for linux/amd64 and arm64, so no compiler is needed.
COPY pyproject.toml README.md ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--no-cache-dir', *deps])"

# The code and the data it reads at run time. mappings/ and profiles/ are not inside the Python
# package, so `pip install .` alone would leave them out: they are copied next to adapter/.
COPY adapter/ ./adapter/
COPY mappings/ ./mappings/
COPY profiles/ ./profiles/
RUN pip install --no-cache-dir --no-deps -e . \
    && mmr-adapter --version \
    && python -c "from adapter.mappings import directory; directory()" \
    && test -f "$MMR_PROFILES_DIR/package.json"

# Unprivileged user, numeric in USER so a runtime can check it is not root. It owns nothing under
# /app (code and data are read-only to it); beat keeps its schedule in MMR_STATE_DIR, by default
# under its home (~/.local/state/mmr-adapter).
RUN groupadd --system --gid 10001 mmr \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/mmr mmr
USER 10001:10001

EXPOSE 8000

# No HEALTHCHECK here: the same image runs the worker and beat, which serve no HTTP. The compose
# file gives the api service its healthcheck (GET /health).
# Every interface of the container: serve then needs MMR_OPERATOR_TOKEN (it guards /metrics, /docs
# and /openapi.json) and refuses to start without it.
ENTRYPOINT ["mmr-adapter"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
