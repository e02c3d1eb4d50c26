"""The ``qrc`` command line (Typer)."""
