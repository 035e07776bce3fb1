"""DVC entry point of the `report` stage (same code path as `gradlab report`)."""

from gradlab.report import main

if __name__ == "__main__":
    raise SystemExit(main())
