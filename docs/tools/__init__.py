"""Tooling for the docs: the console's demo data and its screenshots (not part of the installed package)."""
