# The settlement hub's image: `settlement serve`, `settlement dev-pki`, the
# reference clients (python -m clients.us_bank ...) and, later, the demo.
# Built by docker-compose.yml; `docker build -t settlement-hub .` works alone.

# Stage 1: a wheel of the project, built from the sources .dockerignore lets in.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ledger ./ledger
COPY settlement ./settlement
COPY clients ./clients
RUN pip wheel --no-deps --wheel-dir /wheels .

# Stage 2: the runtime dependencies and the wheel; no sources, no dev extra.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels

# An unprivileged user owns the PKI and data directories; named volumes
# mounted there start with this ownership.
RUN groupadd --system --gid 10001 settlement \
 && useradd --system --uid 10001 --gid settlement --home-dir /home/settlement \
        --create-home --shell /usr/sbin/nologin settlement \
 && install -d -o settlement -g settlement -m 0700 /pki \
 && install -d -o settlement -g settlement -m 0700 /data
USER settlement:settlement
WORKDIR /home/settlement

EXPOSE 50051
ENTRYPOINT ["settlement"]
CMD ["--help"]
