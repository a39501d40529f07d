"""Issue 14, item 2: a kill while a checkpoint is being saved does not poison the run."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import TrainerCallback

from pplaw import runs
from pplaw.train import cpt


class _Crash(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_last_complete_checkpoint_skips_a_half_written_one(tmp_path):
    good, half, junk = tmp_path / "checkpoint-10", tmp_path / "checkpoint-20", tmp_path / "checkpoint-30"
    for d in (good, half, junk):
        d.mkdir()
    (good / "model.safetensors").write_bytes(b"w")
    (good / "trainer_state.json").write_text('{"global_step": 10}')
    (half / "config.json").write_text("{}")  # killed right after the first file
    (junk / "model.safetensors").write_bytes(b"w")
    (junk / "trainer_state.json").write_text('{"global_st')  # killed while writing the state
    assert runs.last_complete_checkpoint(tmp_path) == str(good)
    assert runs.last_complete_checkpoint(tmp_path / "none") is None


def test_a_run_killed_while_saving_a_checkpoint_resumes_from_the_last_complete_one(world, make_args, tmp_path):
    kw = dict(budget_tokens=64 * 4 * 10, save_steps=4, lr_scheduler_type="constant_with_warmup")
    cfg, ecfg, targs = make_args(tmp_path / "straight", **kw)
    cpt.train(cfg, ecfg, targs)

    run = tmp_path / "killed"
    cfg, ecfg, targs = make_args(run, **kw)
    with pytest.raises(KeyboardInterrupt):
        cpt.train(cfg, ecfg, targs, callbacks=[_Crash()])
    # the kill came during the save of checkpoint-8: only its config.json was written
    (run / "checkpoint-8").mkdir()
    shutil.copy(run / "checkpoint-4" / "config.json", run / "checkpoint-8" / "config.json")

    cfg, ecfg, targs = make_args(run, **kw)
    rec = cpt.train(cfg, ecfg, targs)
    assert rec["status"] == "trained" and rec["training"]["resumed_from"].endswith("checkpoint-4")
    assert rec["training"]["global_step"] == 10
    a, b = _weights(tmp_path / "straight" / "model"), _weights(run / "model")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
