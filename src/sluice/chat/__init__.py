"""The chat application: conversations that persist, on top of the engine."""
