# budgetd sidecar image: `docker build -t budgetd .`
# Mount your budgets.yaml at /etc/budgetd/budgets.yaml and a volume at /var/lib/budgetd.

# --- build: install the client and the daemon into a self-contained venv ---
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY client/ client/
COPY pyproject.toml README.md ./
COPY budgetd/ budgetd/
RUN python -m venv /opt/budgetd \
    && /opt/budgetd/bin/pip install ./client .

# --- run: the venv, the example config, a non-root user ---
FROM python:3.11-slim
RUN groupadd --system --gid 10001 budgetd \
    && useradd --system --uid 10001 --gid budgetd --home-dir /var/lib/budgetd --create-home budgetd
COPY --from=build /opt/budgetd /opt/budgetd
COPY config/budgets.yaml /etc/budgetd/budgets.yaml
# Loopback by default: the sidecar shares the agent pod's network namespace.
ENV PATH=/opt/budgetd/bin:$PATH \
    BUDGETD_LISTEN=127.0.0.1:50051 \
    BUDGETD_STORE_URL=sqlite:///var/lib/budgetd/budgetd.db \
    BUDGETD_ADDRESS=127.0.0.1:50051 \
    BUDGETD_DASHBOARD_LISTEN=127.0.0.1:8080
USER 10001:10001
WORKDIR /var/lib/budgetd
VOLUME ["/var/lib/budgetd"]
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["budgetctl", "--timeout", "2", "health"]
# SIGTERM drains in-flight calls (server.shutdown_grace_seconds) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["budgetd", "--config", "/etc/budgetd/budgets.yaml"]
