# Image for the web (Daphne), worker and beat services of compose.yaml.
FROM python:3.11-slim

# DEBUG off, whatever starts the image: its debug pages would show settings and code to anyone.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 DEBUG=0
WORKDIR /app

# A CPU build of torch first: the default wheel on Linux pulls gigabytes of CUDA the app does not use.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY chatbot chatbot
COPY knowledge knowledge
COPY inference inference
RUN pip install .
# The packaged embedding model exported to ONNX (the default EMBEDDING_BACKEND), offline, into the image.
RUN python -m knowledge.onnx_export

COPY manage.py ./
COPY templates templates
COPY static static
COPY docs docs
# Collected into the image, not under /data: the data volume mounted there at run time would hide them.
ENV STATIC_ROOT=/app/static-collected
RUN SECRET_KEY=build-only DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost \
    python manage.py collectstatic --no-input

RUN useradd --system --uid 1000 parley && mkdir -p /data && chown parley /data
USER parley
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "chatbot.asgi:application"]
