# tidings in a container: the data (LMDB) lives in the /data volume.
#   docker build -t tidings .
#   docker run --rm -v tidings-data:/data tidings tidings user add alice --password-stdin < alice.pw
#   docker run -d -p 8080:8080 -v tidings-data:/data tidings
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TIDINGS_DATA=/data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY store ./store
COPY indexer ./indexer
RUN pip install . \
    && useradd --system --home-dir /data --shell /usr/sbin/nologin tidings \
    && mkdir -p /data && chown tidings:tidings /data

USER tidings
WORKDIR /data
VOLUME /data
EXPOSE 8080
CMD ["tidings", "serve", "--host", "0.0.0.0", "--port", "8080", "--data", "/data"]
