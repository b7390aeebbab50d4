//! The `mltrader` command line: one module a subcommand, each a thin shell over the libraries.
