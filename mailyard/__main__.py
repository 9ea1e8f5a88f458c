"""`python -m mailyard`: the `mailyard` command (the same `main`, the same imports)."""

from mailyard.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
