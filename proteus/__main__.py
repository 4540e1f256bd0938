"""``python -m proteus`` runs the command line."""

from proteus.cli import main

main()
