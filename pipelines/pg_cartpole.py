"""DVC entry point of the `pg_cartpole` stage (same code path as `gradlab run pg_cartpole`)."""

from gradlab.runner import main

if __name__ == "__main__":
    raise SystemExit(main("pg_cartpole"))
