"""Issue 14, item 9: environment errors are one clear line, name the file, and leave a resumable run."""

from __future__ import annotations

import errno
import json

import pytest

from pplaw._atomic import atomic_write_json, remove_stale_temporaries
from pplaw.exceptions import ConfigError, InvalidInputError
from pplaw.pipeline.stages import Stages


@pytest.mark.parametrize("text,match", [("", "is empty"), ('{"text": "a"}\n{"text": "b"\n{"text": "c"}\n', "line 2"),
                                        ('{"text": "a"}\n[1, 2]\n', "line 2 is not a JSON object")])
def test_an_empty_or_malformed_jsonl_corpus_names_the_line(tmp_path, text, match):
    from pplaw.score.job import ScoreConfig, load_corpus

    f = tmp_path / "docs.jsonl"
    f.write_text(text)
    with pytest.raises(InvalidInputError, match=match) as err:
        load_corpus(ScoreConfig(model="unused", data=str(f), out=str(tmp_path / "o")))
    assert str(f) in str(err.value)


def test_a_damaged_shard_on_resume_is_named(tmp_path):
    from pplaw.score.job import _summarise

    shard = tmp_path / "scores-00000-of-00001.parquet"
    shard.write_bytes(b"PAR1 truncated")
    with pytest.raises(InvalidInputError, match="scores-00000-of-00001.parquet.* is damaged.*delete it"):
        _summarise([shard], tmp_path)


def test_a_missing_model_path_is_not_reported_as_a_bad_repo_id(tmp_path):
    from pplaw.config import check_model_ref

    check_model_ref("gpt2", "model")
    check_model_ref("org/name", "model")
    for bad in (str(tmp_path / "no_model"), "./rel/model", "a/b/c"):
        with pytest.raises(ConfigError, match="model_name_or_path: .* is not a model folder"):
            check_model_ref(bad, "model_name_or_path")


def test_a_full_disk_is_one_clear_line_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    import pplaw.pipeline as PL
    from pplaw.cli.main import main

    def full(recipe, out, **kw):  # run_pipeline(recipe, out, detach=...)
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "score" / "x.parquet"))

    monkeypatch.setattr(PL, "run_pipeline", full)
    assert main(["run", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "x.parquet" in err and "resumes" in err and "Traceback" not in err


def test_a_full_disk_in_a_stage_corrupts_nothing_and_the_stage_is_redone(tmp_path):
    st = Stages(tmp_path, log=lambda m: None)
    st.run("s", 1, lambda d: atomic_write_json(d / "a.json", {"v": 1}) and {"file": "a.json"}, mode="inplace")

    def disk_full(tmp):
        tmp.write_text('{"v": 2, "half')
        raise OSError(errno.ENOSPC, "No space left on device")

    from pplaw._atomic import atomic_write

    with pytest.raises(OSError):
        st.run("s", 2, lambda d: atomic_write(d / "a.json", disk_full) and {}, mode="inplace")
    left = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert not [n for n in left if n.endswith(".tmp")]  # no temporary left behind
    assert not (tmp_path / "s" / "stage.json").exists()  # not done: redone on the next run
    assert st.run("s", 2, lambda d: atomic_write_json(d / "a.json", {"v": 2}) and {"file": "a.json"},
                  mode="inplace") == {"file": "a.json"}
    assert json.loads((tmp_path / "s" / "a.json").read_text()) == {"v": 2}


def test_leftover_temporaries_of_a_kill_are_cleaned(tmp_path):
    stale = [tmp_path / ".summary.json.ab12cd_9.tmp", tmp_path / ".comparison.png.zz99yy00.png"]
    keep = [tmp_path / "summary.json", tmp_path / ".pplaw_run", tmp_path / "notes.tmp"]
    for f in stale + keep:
        f.write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert all(f.exists() for f in keep) and not any(f.exists() for f in stale)


def test_lm_evals_git_probe_is_quiet(tmp_path, monkeypatch, capfd):
    """Issue 14 item 10: lm-eval's git probe printed 'fatal: not a git repository' once per evaluation."""
    from pplaw.train.evaluate import _quiet_git_hash

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert _quiet_git_hash() is None
    assert "fatal" not in capfd.readouterr().err


def _tiny_model(path):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path / "model.safetensors"


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors_name_the_option_and_the_file(tmp_path, damage):
    """A model folder whose weights were cut short (a copy interrupted, a full disk) or overwritten: the error
    names the option and the file, for training, scoring and evaluation alike (not safetensors' bare
    'Error while deserializing header')."""
    from pplaw.config import load_causal_lm
    from pplaw.train.evaluate import _load
    from pplaw.exceptions import ScoringError
    from pplaw.score.scorer import score_perplexity

    f = _tiny_model(tmp_path / "m")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a safetensors file")
    with pytest.raises(ConfigError, match=r"model_name_or_path: the weights of .* \(model\.safetensors\) are "
                                          r"corrupt or truncated"):
        load_causal_lm(str(tmp_path / "m"), "model_name_or_path")
    with pytest.raises(ConfigError, match="model_path: the weights"):
        _load(str(tmp_path / "m"), object())  # a tokenizer object: the model alone is loaded
    with pytest.raises(ScoringError, match="corrupt or truncated"):
        score_perplexity(str(tmp_path / "m"))._load(None)
