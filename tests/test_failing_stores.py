"""A tracking store that cannot be used: exit 1 within 10 s, a clear message, no training started."""

from __future__ import annotations

import socket
import time

import pytest
from conftest import gradlab, tiny_params


def _refusing_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bad_uris(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a sqlite database" * 100)
    return {
        "refused": (f"http://127.0.0.1:{_refusing_port()}", "cannot be reached"),
        "proc": ("sqlite:////proc/gradlab/mlflow.db", "does not exist"),
        "parent_is_file": (f"sqlite:///{not_a_dir}/mlflow.db", "does not exist"),
        "unopenable": ("sqlite:////proc/mlflow.db", "not writable"),
        "garbage": (f"sqlite:///{garbage}", "not writable"),
    }


@pytest.mark.parametrize("case", ["refused", "proc", "parent_is_file", "unopenable", "garbage"])
def test_unusable_store_exits_1_fast(tmp_path, case):
    uri, fragment = _bad_uris(tmp_path)[case]
    params = tiny_params(tmp_path, "gd")
    start = time.monotonic()
    out = gradlab(
        "run", "gd", "--params", str(params), env={"MLFLOW_TRACKING_URI": uri, "GRADLAB_RESULTS": str(tmp_path / "r")}
    )
    elapsed = time.monotonic() - start
    assert out.returncode == 1, out.stderr
    assert elapsed < 10
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: tracking") and fragment in last, last
    assert not (tmp_path / "r").exists()  # nothing started, nothing written
