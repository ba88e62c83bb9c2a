"""Guardrails: rules that check text going to a model and coming back from it."""
