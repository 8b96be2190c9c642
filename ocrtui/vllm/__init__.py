"""vLLM servers: HTTP client, metrics, startup stages, failure hints, lifecycle."""
