"""The response cache and request coalescing (see ``responses``): which requests share
an answer (``key``), how an answer is kept (``entry``), and the service around the
engine's start (``responses``). Backends live with the other stores
(``sluice.store.answer_cache``)."""
