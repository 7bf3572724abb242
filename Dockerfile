# tidings in a container: the data (LMDB, blobs, index) lives in the /data volume.
#   docker build -t tidings .
#   docker run --rm -i -v tidings-data:/data tidings tidings user add alice --password-stdin < alice.pw
#   docker run -d --name tidings -p 127.0.0.1:8080:8080 -v tidings-data:/data tidings
# README "Docker" has the rest: TLS, the public URL, a reverse proxy, health check, metrics.
# Linted by tests/test_dockerfile.py (hadolint).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TIDINGS_DATA=/data

# a fixed numeric UID and GID: files in the volume keep one owner across rebuilds, and a host
# directory mounted as /data can be given to it (chown 10001:10001)
RUN groupadd --system --gid 10001 tidings \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /data \
       --shell /usr/sbin/nologin tidings \
    && mkdir -p /data \
    && chown 10001:10001 /data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY store ./store
COPY indexer ./indexer
RUN pip install --no-cache-dir .

USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# slim has no curl: the standard library asks /healthz (200 when the store answers a read)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]

# behind a proxy in another container, add --public-url https://your.host (or --forwarded-allow-ips
# with the proxy's address); for Prometheus in another container, --metrics on (README "Docker")
CMD ["tidings", "serve", "--host", "0.0.0.0", "--port", "8080", "--data", "/data"]
