"""DVC entry point of the `spearman` stage (same code path as `gradlab run spearman`)."""

from gradlab.runner import main

if __name__ == "__main__":
    raise SystemExit(main("spearman"))
