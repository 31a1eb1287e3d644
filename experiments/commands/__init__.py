"""One module per `slosched` sub-command; each has `register(subparsers)` and `run(args) -> int`."""
