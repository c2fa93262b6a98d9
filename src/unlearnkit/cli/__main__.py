"""``python -m unlearnkit.cli``: the ``unlearn`` console command."""

from unlearnkit.cli import main

main()
