# Oxify service image: slim, non-root, migrates the database then serves on :8000.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
RUN python -m venv /opt/oxify && /opt/oxify/bin/pip install --no-compile .

FROM python:3.11-slim
ENV PATH=/opt/oxify/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    OXIFY_DATABASE_URL=sqlite+aiosqlite:////data/oxify.db
RUN useradd --system --uid 10001 --home-dir /data --create-home oxify
COPY --from=build /opt/oxify /opt/oxify
USER oxify
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"
# `oxify serve` runs the migrations, then serves; SIGTERM pauses running runs at a checkpoint.
STOPSIGNAL SIGTERM
CMD ["oxify", "serve", "--host", "0.0.0.0", "--port", "8000"]
