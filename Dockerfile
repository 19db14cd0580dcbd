# taskledger: one image for every role (edge, processors, dev tools).
#   docker build -t taskledger .
#   docker run --rm taskledger --help
# Used by docker-compose.kafka.yml (Kafka, the Firestore emulator and fake-gcs-server beside it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package needs (see [tool.setuptools.packages.find] in pyproject.toml), so the
# local .venv, .cache and data folders never reach the image.
COPY pyproject.toml README.md ./
COPY events ./events
COPY aggregates ./aggregates
COPY projections ./projections
COPY processors ./processors
COPY http_edge ./http_edge
COPY miners ./miners
COPY blobs ./blobs
COPY taskledger ./taskledger
COPY bench ./bench
RUN pip install . \
    && useradd --create-home --uid 10001 taskledger \
    && mkdir -p /data \
    && chown taskledger /data

USER taskledger
WORKDIR /home/taskledger
ENV TASKLEDGER_DATA_DIR=/data \
    TASKLEDGER_HOST=0.0.0.0 \
    TASKLEDGER_PORT=8080
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["taskledger"]
CMD ["--help"]
