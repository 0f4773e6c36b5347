"""The IO layer: Redis (server, store, event log), arq, and the Messages API client."""
