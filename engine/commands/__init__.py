"""Subcommands of ``fld``, one module each (see ``engine.cli``)."""
