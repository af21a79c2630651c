"""python -m nr: the same as the nr console script."""

from nr.launch import main

main()
