"""pplaw.ray.score on a local Ray instance equals the single-process scorer."""

from __future__ import annotations

import numpy as np
import pytest

from pplaw.score.scorer import PerplexityScorer


# Ray runs in a child process: Ray's threads and gRPC state outlive ray.shutdown(), and a later fork in
# this pytest process (datasets' map(num_proc=...)) would then kill the forked workers.
_CHILD = r"""
import json, sys
import numpy as np
import ray
import pplaw.ray
from pplaw.exceptions import MissingColumnError

args = json.loads(sys.argv[1])
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
try:
    out = {}
    if args["what"] == "score":
        items = [{"chunk_id": i, "input_ids": np.asarray(r, dtype=np.int32)} for i, r in enumerate(args["rows"])]
        ds = ray.data.from_items(items, override_num_blocks=4)
        scored = pplaw.ray.score(ds, args["model"], concurrency=2, num_cpus=1, batch_size=8, max_tokens_per_batch=512)
        rows = sorted(scored.take_all(), key=lambda r: r["chunk_id"])
        out = {k: [float(r[k]) if k == "nll_sum" else int(r[k]) for r in rows] for k in ("chunk_id", "nll_sum", "n_scored")}
    else:
        try:
            pplaw.ray.score(ray.data.from_items([{"body": "x"}]), args["model"])
        except MissingColumnError as err:
            out = {"error": str(err)}
    print("RESULT " + json.dumps(out))
finally:
    ray.shutdown()
"""


def _in_child(**args) -> dict:
    import json
    import subprocess
    import sys

    pytest.importorskip("ray", reason="needs the `pplaw[ray]` extra (ray[data])")
    pytest.importorskip("ray.data")
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True,
                          timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"ray child failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
def test_ray_equals_plain(llama_path, chunk_rows):
    rows = [list(map(int, r)) for r in chunk_rows]
    got = _in_child(what="score", model=str(llama_path), rows=rows)
    expect = PerplexityScorer(str(llama_path)).score_token_ids(chunk_rows)
    assert got["chunk_id"] == list(range(len(chunk_rows)))
    np.testing.assert_allclose(got["nll_sum"], expect["nll_sum"], rtol=1e-6)
    np.testing.assert_array_equal(got["n_scored"], expect["n_scored"])


def test_ray_missing_column_is_clear(llama_path):
    import re

    got = _in_child(what="missing", model=str(llama_path))
    assert "error" in got, "pplaw.ray.score accepted a dataset without input_ids/text"
    assert re.search(r"'input_ids' nor the text column 'text'.*\['body'\]", got["error"]), got["error"]


def test_missing_ray_names_the_extra(monkeypatch):
    import sys

    import pplaw.ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'pplaw\[ray\]'"):
        pplaw.ray.score(object(), "model")
