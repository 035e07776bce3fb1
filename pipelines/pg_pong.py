"""DVC entry point of the `pg_pong` stage (same code path as `gradlab run pg_pong`)."""

from gradlab.runner import main

if __name__ == "__main__":
    raise SystemExit(main("pg_pong"))
