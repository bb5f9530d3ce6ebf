"""``python -m ocimodel``."""

from .cli import main

main()
