# One image for every Rased service; docker-compose.yml picks the console script to run.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
COPY model_repository ./model_repository
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --system --uid 10001 rased
USER rased
# The command is the service's console script, e.g. rased-ingestion.
CMD ["rased", "--help"]
