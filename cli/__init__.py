"""streamcore.cli: the ``streamcore`` command."""
