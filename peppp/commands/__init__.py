"""One module per `peppp` subcommand (see `peppp.cli`)."""
