"""Importing this module registers every workflow step, in the routine's order."""

from adapter.workflow import arrival  # noqa: F401  [3] arrival at the specialist clinic
