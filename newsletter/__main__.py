"""python -m newsletter: the same as the newsletter command."""

from .cli import main

main()
