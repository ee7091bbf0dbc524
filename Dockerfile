# srcrn serve in a container: the ONNX Runtime engine and scikit-learn for feature models and stacks
# (no torch, no training extras).
#
#   srcrn export onnx --segmenter SEG.ckpt --classifier CLS.ckpt --out bundle   # on a training machine
#   docker build -t srcrn-serve .
#   docker run --rm -p 8000:8000 -v "$PWD/bundle:/bundle:ro" -e SRCRN_API_KEY=change-me srcrn-serve
#
# The service is stateless: run N replicas behind any load balancer, probing /api/v1/ready.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[serve]' && useradd --system --uid 10001 srcrn
USER srcrn
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/ready', timeout=4)"
# Inside a container the port must be reachable from outside it: --host 0.0.0.0, behind the
# bearer token given in SRCRN_API_KEY.
ENTRYPOINT ["srcrn", "serve", "--model", "/bundle", "--host", "0.0.0.0", "--port", "8000"]
