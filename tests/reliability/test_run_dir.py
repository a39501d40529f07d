"""Issue 14, items 1 and 7: pplaw never deletes or replaces what it did not write; one run per directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pplaw.exceptions import ConfigError, RunDirError, RunLockedError
from pplaw.pipeline.stages import LOCK, MARKER, RUN_MARKER, RunLock, Stages, claim_run_dir

REPO = Path(__file__).resolve().parents[2]


def _quiet(tmp):
    return Stages(tmp, log=lambda m: None)


def test_every_stage_folder_is_marked(tmp_path):
    st = _quiet(tmp_path)
    st.run("a", 1, lambda d: {})
    st.run("b", 1, lambda d: {}, mode="inplace")
    st.run("c", 1, lambda d: {}, mode="always")
    for name in "abc":
        assert (tmp_path / name / MARKER).is_file(), name


@pytest.mark.parametrize("mode", ["atomic", "inplace", "always"])
def test_a_users_folder_in_the_way_is_never_deleted(tmp_path, mode):
    user = tmp_path / "landscape"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(RunDirError, match=str(user)) as err:
        _quiet(tmp_path).run("landscape", 1, lambda d: {}, mode=mode)
    assert "did not write" in str(err.value)
    assert (user / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in user.iterdir()) == ["thesis.tex"]


def test_a_users_file_where_a_stage_goes_is_refused(tmp_path):
    (tmp_path / "fit").write_text("mine")
    with pytest.raises(RunDirError, match="is a file"):
        _quiet(tmp_path).run("fit", 1, lambda d: {})
    assert (tmp_path / "fit").read_text() == "mine"


def test_a_users_folder_named_like_the_partial_folder_is_kept(tmp_path):
    work = tmp_path / ".plan.partial"
    work.mkdir()
    (work / "notes").write_text("x")
    with pytest.raises(RunDirError, match=r"\.plan\.partial"):
        _quiet(tmp_path).run("plan", 1, lambda d: {})
    assert (work / "notes").is_file()


def test_pplaws_own_stage_is_replaced_but_not_a_folder_without_its_marker(tmp_path):
    st = _quiet(tmp_path)
    st.run("a", 1, lambda d: (d / "f").write_text("one") and {})
    st.run("a", 2, lambda d: (d / "f").write_text("two") and {})
    assert (tmp_path / "a" / "f").read_text() == "two"
    # the marker is what makes a folder pplaw's: a stage.json of that stage alone does not
    (tmp_path / "a" / MARKER).unlink()
    with pytest.raises(RunDirError, match="no .pplaw_stage marker"):
        st.run("a", 3, lambda d: (d / "f").write_text("three") and {})
    assert (tmp_path / "a" / "f").read_text() == "two"


def test_out_on_a_users_folder_is_refused_without_touching_it(tmp_path):
    (tmp_path / "landscape").mkdir()
    (tmp_path / "landscape" / "mine.csv").write_text("1")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(RunDirError, match="not a pplaw run directory"):
        claim_run_dir(tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        claim_run_dir(f)
    new = claim_run_dir(tmp_path / "new")
    assert (new / RUN_MARKER).is_file()
    assert claim_run_dir(new) == new  # a pplaw run directory is resumed


def test_out_on_a_users_folder_through_the_command_line(tmp_path, capsys):
    from pplaw.cli.main import main

    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "keep.txt").write_text("k")
    assert main(["run", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "not a pplaw run directory" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan"]


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "", "~x", "a\\b"])
def test_a_recipe_name_must_be_a_plain_folder_name(name):
    from pplaw.pipeline import load_recipe

    with pytest.raises(ConfigError, match="name must be a plain folder name"):
        load_recipe(None, [("name", json.dumps(name))])


def test_the_run_lock_names_its_holder_and_is_released(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released: taken again
        pass


def test_a_second_pplaw_run_on_a_locked_directory_fails_at_once(tmp_path):
    """Another process holds the lock: `pplaw run` exits 1 at once, naming the holder, and writes nothing."""
    claim_run_dir(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pplaw.pipeline.stages import RunLock
        with RunLock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "python")})
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = sorted(p.name for p in tmp_path.iterdir())
        proc = subprocess.run([sys.executable, "-m", "pplaw.cli.main", "run", "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(REPO / "python")})
        assert proc.returncode == 1, proc.stderr
        assert f"pid {holder.pid}" in proc.stderr and "in use by another pplaw run" in proc.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before == sorted([LOCK, RUN_MARKER])
    finally:
        holder.kill()
        holder.wait()
