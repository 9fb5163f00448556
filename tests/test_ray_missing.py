"""Without Ray installed, ``--ray`` is a one-line error (this module runs with or without Ray)."""

from __future__ import annotations

import sys

from tests.conftest import peru_france, tiny_flags


def test_without_ray_the_flag_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from halluscan.cli import main

    tiny = peru_france(tmp_path, 4)

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    code = main(["run", "--name", "noray", *tiny_flags(tiny), "--quiet", "--ray"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "pip install 'halluscan[ray]'" in err and len(err.splitlines()) == 1
    assert not (tiny / "runs" / "noray").exists()  # refused before anything was written
