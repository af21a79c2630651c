"""python -m nr: the same as the nr console script."""

from nr.cli import main

main()
