"""DVC entry point of the `input_grad` stage (same code path as `gradlab run input_grad`)."""

from gradlab.runner import main

if __name__ == "__main__":
    raise SystemExit(main("input_grad"))
