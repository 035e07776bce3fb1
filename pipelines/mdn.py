"""DVC entry point of the `mdn` stage (same code path as `gradlab run mdn`)."""

from gradlab.runner import main

if __name__ == "__main__":
    raise SystemExit(main("mdn"))
