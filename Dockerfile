# The gateway image used by docker-compose.yml. ffmpeg comes from imageio-ffmpeg.
FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -e .
EXPOSE 8000
CMD ["ztream", "serve", "--config", "/app/grafana/gateway.toml"]
