"""`python -m shufflesearch.cli`: the command line (the console script is `shufflesearch.__main__`)."""

from . import main

main()
