"""DVC entry point of the `gd` stage (same code path as `gradlab run gd`)."""

from gradlab.runner import main

if __name__ == "__main__":
    raise SystemExit(main("gd"))
