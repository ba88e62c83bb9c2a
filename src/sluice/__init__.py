"""sluice: a streaming LLM chat gateway."""
