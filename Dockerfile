# A scheduler0 node.
#
#   docker build -t scheduler0 .
#   docker run -d -p 127.0.0.1:9091:9091 -v scheduler0-data:/data scheduler0
#
# docker-compose.yml runs a three-node cluster of this image. Configure a node
# with SCHEDULER0_* environment variables (see config.yml.example); without
# SCHEDULER0_SECRET_KEY / _AUTH_USERNAME / _AUTH_PASSWORD a node generates its
# secrets into /data/.scheduler0.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package and its runtime dependencies, at the versions the tests ran:
# requirements/dev.lock serves as constraints (without its hashes, so that
# nothing but the runtime dependencies is installed).
WORKDIR /build
COPY pyproject.toml README.md ./
COPY requirements/dev.lock requirements/dev.lock
COPY scheduler0 scheduler0
RUN sed -e '/^ *--hash/d' -e 's/ *\\$//' requirements/dev.lock > constraints.txt \
    && pip install --constraint constraints.txt . \
    && cd / && rm -rf /build

# An unprivileged user (numeric, so runAsNonRoot policies can check it) owning
# the data directory: the SQLite database, the raft files and, if generated,
# the .scheduler0 secrets.
RUN groupadd --system --gid 10001 scheduler0 \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home scheduler0 \
    && mkdir -p /data && chown 10001:10001 /data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# Listen on every interface of the container (a cluster sets its host name
# instead: peers reach a node at Host:Port). API 9091 and raft 7071 are the
# defaults of Port and RaftAddress.
ENV SCHEDULER0_HOST=0.0.0.0 \
    SCHEDULER0_PORT=9091 \
    SCHEDULER0_DATA_DIR=/data
EXPOSE 9091 7071

# The API answers GET /api/v1/healthcheck (no auth) as long as the node serves.
# The check reads the same SCHEDULER0_HOST and SCHEDULER0_PORT as the node.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request as r; e = os.environ.get; r.urlopen('http://%s:%s/api/v1/healthcheck' % (e('SCHEDULER0_HOST', '127.0.0.1').replace('0.0.0.0', '127.0.0.1'), e('SCHEDULER0_PORT', '9091')), timeout=4)"

ENTRYPOINT ["scheduler0", "start"]
