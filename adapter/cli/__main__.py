"""``python -m adapter.cli``: the same as the ``mmr-adapter`` command."""

from adapter.cli import main

main()
