"""``python -m qrc``: the same as the ``qrc`` command."""

from qrc.cli.main import run

run()
