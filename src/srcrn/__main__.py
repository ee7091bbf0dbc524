"""``python -m srcrn``: the command line."""

from srcrn.cli import main

if __name__ == "__main__":
    main()
