"""Command-line interface: ``mlff <command>``; one module per command, thin over the library API."""
