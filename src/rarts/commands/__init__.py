"""One module per `rarts` subcommand; each exposes register(subparsers)."""
