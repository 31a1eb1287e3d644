"""Where policies run: the built-in simulated engine (default) and the vLLM bridge."""
