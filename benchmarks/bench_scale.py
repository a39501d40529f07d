"""Scaling of the streaming landscape, band/target sampling and DOS from Parquet (issue 27), with DuckDB and
polars' streaming engine as anchors, in the same run and on the same files.

    python benchmarks/bench_scale.py --n 1e7 [--dir /tmp/scale] [--anchors] [--in-memory] [--json out.json]
    python benchmarks/bench_scale.py --simulate 1e9 --shards 8     # 10^9 by simulation (see below)

Data: ``n`` chunks in shards of 10^6 rows (row groups of 2^18), generated deterministically: shard ``k`` is
the same whatever ``n`` (ids ``k * 10^6 + i``, PPL ``1 + exp(N(2.3, 0.55))``, 90% of chunks 1,024 tokens,
the rest 64..1,023, so statistics are token-weighted). Every measurement runs in a fresh subprocess and
reports its wall time and peak RSS (``ru_maxrss``), so one step's memory does not hide another's.

Steps: ``landscape`` (pass 1, saved for the others), ``band`` (uniform draw in the token-weighted quantile
band 0.35..0.70, 10% of the tokens), ``target`` (tilted draw to mean 0.9x, std 0.7x the corpus', 10%),
``dos`` (the same target) - each of the last three reading the saved pass 1 -, and ``e2e``: landscape +
DOS in one process from Parquet. Anchors: DuckDB ``quantile_cont`` / ``approx_quantile`` and a window query
for the band (``sum() OVER (ORDER BY hash)``), polars' streaming engine for the quantiles and the band.
``--in-memory``: pplaw's in-memory sampling and DOS on the whole table against a numpy band draw, with and
without a second process keeping the other core busy.

``--simulate 1e9``: the per-shard cost of every pass is measured on ``--shards`` shards of the 10^9 corpus
(generated on the fly, each a one-shard directory run end to end), plus the driver's merge of 1,000 grids;
the total is the linear model ``shards x cost per shard / cores``. Measured: the per-shard costs; simulated:
the total.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SHARD = 1_000_000
ROW_GROUP = 1 << 18
BAND = (0.35, 0.70)
SHARE = 0.10


def gen_shard(k: int, path: Path, rows: int = SHARD) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng([27, k])
    ppl = 1.0 + np.exp(rng.normal(2.3, 0.55, rows))
    tok = np.where(rng.random(rows) < 0.9, 1024, rng.integers(64, 1024, rows)).astype(np.int32)
    ids = np.arange(k * SHARD, k * SHARD + rows, dtype=np.int64)
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table({"chunk_id": ids, "ppl": ppl, "n_scored": tok}), tmp, row_group_size=ROW_GROUP)
    os.replace(tmp, path)


def generate(n: int, root: Path) -> Path:
    d = root / f"n{n:.0e}".replace("+", "")
    d.mkdir(parents=True, exist_ok=True)
    for k in range((n + SHARD - 1) // SHARD):
        p = d / f"shard-{k:05d}.parquet"
        if not p.exists():
            gen_shard(k, p, min(SHARD, n - k * SHARD))
    return d


# ----------------------------------------------------------------------------------------------------------
# steps (each in its own process: `bench_scale.py --step NAME --data DIR --work DIR`)


def _targets(summary: dict) -> tuple[float, float, int]:
    return summary["mean"] * 0.9, summary["std"] * 0.7, int(summary["n_tokens"] * SHARE)


def _load_scan(work: Path):
    from pplaw import _core
    from pplaw.stream.scan import Scan
    from pplaw.stream.shards import Columns

    doc = json.loads((work / "scan.json").read_text())
    return Scan(doc["path"], [Path(f) for f in doc["files"]], doc["counts"], Columns(*doc["columns"]),
                _core.GridCore.from_json(doc["grid"]), doc["w_max"], doc["w_min"])


def step(name: str, data: Path, work: Path) -> dict:
    glob = str(data / "*.parquet")
    t0 = time.perf_counter()
    info: dict = {}
    if name in ("landscape", "e2e"):
        from pplaw.stream import dos_dir, scan_dir

        scan = scan_dir(data, progress=False)
        land = scan.landscape(100)
        info["landscape_s"] = time.perf_counter() - t0
        info["q"] = [float(land.ppl_at(q)) for q in BAND]
        if name == "landscape":
            (work / "scan.json").write_text(json.dumps({
                "path": scan.path, "files": [str(f) for f in scan.files], "counts": scan.counts,
                "columns": [scan.columns.ppl, scan.columns.tokens, scan.columns.chunk_id],
                "grid": scan.grid.to_json(), "w_max": scan.w_max, "w_min": scan.w_min}))
        else:
            m, s, b = _targets(scan.summary)
            sel = dos_dir(scan, token_budget=b, target_mean=m, target_std=s, exact_limit=0, out=work / "e2e.parquet",
                          progress=False)
            info.update(dos_mean=sel.stats["ppl"]["mean"], dos_std=sel.stats["ppl"]["std"], target=(m, s))
    elif name in ("band", "target", "dos"):
        from pplaw.stream import dos_dir, sample_dir

        scan = _load_scan(work)
        t0 = time.perf_counter()  # pass 1 is the landscape step's
        m, s, b = _targets(scan.summary)
        if name == "band":
            sel = sample_dir(scan, token_budget=b, quantile_window=BAND, out=work / "band.parquet", progress=False)
        elif name == "target":
            sel = sample_dir(scan, token_budget=b, target_mean=m, target_std=s, exact_limit=0,
                             out=work / "target.parquet", progress=False)
        else:
            sel = dos_dir(scan, token_budget=b, target_mean=m, target_std=s, exact_limit=0,
                          out=work / "dos.parquet", progress=False)
        info.update(selected=sel.stats["ppl"]["count"], mean=sel.stats["ppl"]["mean"], std=sel.stats["ppl"]["std"],
                    target=(m, s))
    elif name == "loop_state":
        info.update(_loop_state(data))
    elif name.startswith("duckdb"):
        import duckdb

        con = duckdb.connect()
        con.execute("SET threads = 2")
        if name == "duckdb_quantile":
            info["q"] = con.execute(f"SELECT quantile_cont(ppl, [{BAND[0]}, {BAND[1]}]) FROM "
                                    f"read_parquet('{glob}')").fetchone()[0]
        elif name == "duckdb_approx":
            info["q"] = con.execute(f"SELECT approx_quantile(ppl, [{BAND[0]}, {BAND[1]}]) FROM "
                                    f"read_parquet('{glob}')").fetchone()[0]
        else:  # the band: quantiles, then the first 10% of the tokens in hash order inside them
            lo, hi = con.execute(f"SELECT quantile_cont(ppl, [{BAND[0]}, {BAND[1]}]) FROM "
                                 f"read_parquet('{glob}')").fetchone()[0]
            total = con.execute(f"SELECT sum(n_scored) FROM read_parquet('{glob}')").fetchone()[0]
            out = work / "duckdb_band.parquet"
            con.execute(f"""COPY (SELECT chunk_id FROM (
                SELECT chunk_id, n_scored, sum(n_scored) OVER (ORDER BY hash(chunk_id + 3)
                    ROWS UNBOUNDED PRECEDING) AS cum
                FROM read_parquet('{glob}') WHERE ppl BETWEEN {lo} AND {hi})
                WHERE cum - n_scored < {int(total * SHARE)}) TO '{out}' (FORMAT parquet)""")
            info["q"] = [lo, hi]
    elif name.startswith("polars"):
        import polars as pl

        lf = pl.scan_parquet(glob)
        qs = lf.select(pl.col("ppl").quantile(BAND[0]).alias("lo"),
                       pl.col("ppl").quantile(BAND[1]).alias("hi")).collect(engine="streaming")
        lo, hi = float(qs["lo"][0]), float(qs["hi"][0])
        info["q"] = [lo, hi]
        if name == "polars_band":
            total = int(lf.select(pl.col("n_scored").sum()).collect(engine="streaming").item())
            (lf.filter(pl.col("ppl").is_between(lo, hi)).with_columns(k=pl.col("chunk_id").hash(3)).sort("k")
             .with_columns(cum=pl.col("n_scored").cast(pl.Int64).cum_sum())
             .filter(pl.col("cum") - pl.col("n_scored") < int(total * SHARE)).select("chunk_id")
             .sink_parquet(work / "polars_band.parquet", engine="streaming"))
    else:
        raise SystemExit(f"unknown step {name!r}")
    info["wall_s"] = time.perf_counter() - t0
    info["peak_rss_mb"] = _peak_rss_mb()
    return info


def _loop_state(data: Path) -> dict:
    """What ``pplaw run`` holds in memory before it trains (issue 27: its stages are not streamed yet): the
    scored table as the score stage loads it (``ScoredChunks.load``: ppl, n_scored, chunk_id, doc_id when
    present), the landscape with every chunk's bin (the landscape stage, 20 bins), the realisable region at
    the final budget (the plan stage) and one band draw of the plan (``sample_subset``, a quantile band).
    Peak RSS after each phase, and the bytes per chunk they add to the process' baseline."""
    import numpy as np

    import pplaw
    from pplaw.io import read_scored
    from pplaw.pipeline.plan import realisable_region

    base = _rss_mb()
    phases = {}
    table, _, _ = read_scored(data, ["ppl", "n_scored"], ["chunk_id", "doc_id"], progress=False)
    phases["table"] = _peak_rss_mb()
    land = pplaw.Landscape.from_arrow(table, n_bins=20)
    _ = np.asarray(land.bin_index)
    phases["landscape"] = _peak_rss_mb()
    ppl, tok = table.column("ppl").to_numpy(), table.column("n_scored").to_numpy()
    total = int(tok.sum())
    realisable_region(ppl, tok, int(total * 0.3), "log_ppl")
    phases["region"] = _peak_rss_mb()
    pplaw.sample_subset(table, token_budget=int(total * SHARE), quantile_window=BAND, seed=3, return_indices=True)
    phases["band_draw"] = _peak_rss_mb()
    n = table.num_rows
    return {"rows": n, "base_rss_mb": base, "phases_peak_mb": phases,
            "bytes_per_chunk": {k: (v - base) * 2**20 / n for k, v in phases.items()}}


def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB; None where there is no procfs."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


def _rss_mb() -> float:
    return _status_mb("VmRSS") or float("nan")


def _peak_rss_mb() -> float:
    """This process' peak RSS (VmHWM: unlike ru_maxrss, it starts afresh at exec, not at the parent's)."""
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_step(name: str, data: Path, work: Path, timeout: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, __file__, "--step", name, "--data", str(data), "--work", str(work)],
                           capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"step": name, "error": f"timed out after {timeout} s"}
    if r.returncode:
        return {"step": name, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc {r.returncode}"}
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["step"], out["process_s"] = name, time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------------------------------------
# in memory, with the other core busy


def in_memory(data: Path) -> list[dict]:
    import numpy as np
    import pyarrow.parquet as pq

    import pplaw
    from pplaw.stream import chunk_keys

    table = pq.read_table(data)
    ppl = table.column("ppl").to_numpy()
    tok = table.column("n_scored").to_numpy().astype(np.int64)
    ids = table.column("chunk_id").to_numpy()
    b = int(tok.sum() * SHARE)
    land = pplaw.Landscape.from_arrow(table, n_bins=100)
    m, s = land.mean * 0.9, land.std * 0.7

    def numpy_band():  # the same draw in numpy: token quantiles by a sort, keys by a sort
        o = np.argsort(ppl)
        cum = np.cumsum(tok[o])
        lo, hi = ppl[o][np.searchsorted(cum, np.array(BAND) * cum[-1])]
        w = np.flatnonzero((ppl >= lo) & (ppl <= hi))
        k = np.argsort(chunk_keys(ids[w], 3))
        c = np.cumsum(tok[w][k])
        return np.sort(w[k[: int(np.searchsorted(c, b)) + 1]])

    ops = {"numpy band": numpy_band,
           "pplaw band": lambda: pplaw.sample_subset(table, token_budget=b, quantile_window=BAND, seed=3,
                                                     return_indices=True),
           "pplaw target": lambda: pplaw.sample_subset(table, token_budget=b, target_mean=m, target_std=s,
                                                       return_indices=True),
           "pplaw dos": lambda: pplaw.select_dos(table, token_budget=b, target_mean=m, target_std=s,
                                                 return_indices=True)}
    rows = []
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for name, fn in ops.items():
                best = min(_timed(fn) for _ in range(2))
                rows.append({"op": name, "other_core_busy": busy, "s": best})
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    for r in rows:
        ref = next(x["s"] for x in rows if x["op"] == "numpy band" and x["other_core_busy"] == r["other_core_busy"])
        r["x_numpy_band"] = r["s"] / ref
    return rows


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------------
# 10^9 by simulation


def simulate(n: int, n_shards: int, root: Path, timeout: int) -> dict:
    """Runs :func:`_simulate_worker` in a fresh process (its peak RSS is the one-shard-at-a-time peak)."""
    r = subprocess.run([sys.executable, __file__, "--step", "simulate", "--data", str(root), "--work",
                        json.dumps([n, n_shards])], capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _simulate_worker(root: Path, n: int, n_shards: int) -> dict:
    """Shards of the ``n``-chunk corpus (spread over its id range) generated one at a time, each run through
    every pass as a one-shard directory in this warm process (imports paid once): the cost per shard."""
    import numpy as np
    import pyarrow as pa

    from pplaw import _core
    from pplaw.stream import dos_dir, sample_dir, scan_dir

    total_shards = n // SHARD
    picks = np.linspace(0, total_shards - 1, n_shards).astype(int)
    per = []
    d, o = root / "sim-shard", root / "sim-out"
    d.mkdir(parents=True, exist_ok=True)
    o.mkdir(parents=True, exist_ok=True)
    for k in picks:
        for f in d.glob("*"):
            f.unlink()
        gen_shard(int(k), d / f"shard-{k:05d}.parquet")
        row = {"shard": int(k)}
        t0 = time.perf_counter()
        scan = scan_dir(d, progress=False)
        row["landscape"] = time.perf_counter() - t0
        m, sd, b = _targets(scan.summary)
        for name, fn in (("band", lambda: sample_dir(scan, token_budget=b, quantile_window=BAND, out=o / "o.parquet",
                                                     progress=False)),
                         ("target", lambda: sample_dir(scan, token_budget=b, target_mean=m, target_std=sd,
                                                       exact_limit=0, out=o / "o.parquet", progress=False)),
                         ("dos", lambda: dos_dir(scan, token_budget=b, target_mean=m, target_std=sd, exact_limit=0,
                                                 out=o / "o.parquet", progress=False))):
            t0 = time.perf_counter()
            fn()
            row[name] = time.perf_counter() - t0
        per.append(row)
    for f in d.glob("*"):
        f.unlink()
    # the driver's share at n: merging every shard's grid (the histograms and candidates are fixed-size)
    rng = np.random.default_rng(0)
    g = _core.build_grid(pa.array(1 + np.exp(rng.normal(2.3, 0.55, SHARD))), pa.array(np.full(SHARD, 1024)))
    js = g.to_json()
    t0 = time.perf_counter()
    acc = _core.GridCore.from_json(js)
    for _ in range(total_shards - 1):
        acc = acc.merge(_core.GridCore.from_json(js))
    merge_s = time.perf_counter() - t0
    steps = ("landscape", "band", "target", "dos")
    mean = {s: float(np.mean([p[s] for p in per])) for s in steps}
    spread = {s: float(np.std([p[s] for p in per]) / mean[s]) for s in steps}
    return {"n": n, "shards": total_shards, "measured_shards": per, "driver_grid_merge_s": merge_s,
            "cost_per_shard_s": mean, "cost_per_shard_rel_spread": spread, "peak_rss_mb": _peak_rss_mb(),
            "simulated_total_s_1core": {s: v * total_shards + (merge_s if s == "landscape" else 0)
                                        for s, v in mean.items()},
            "simulated_total_s_2cores": {s: v * total_shards / 2 + (merge_s if s == "landscape" else 0)
                                         for s, v in mean.items()}}


def table(paths: list[str]) -> str:
    """The RESULTS.md table from the JSON files of several runs (one per N)."""
    lines = ["| N | step | wall s | peak RSS MB | s per 10^6 chunks |", "|---|---|---:|---:|---:|"]
    for p in paths:
        r = json.loads(Path(p).read_text())
        for s in r.get("steps", []):
            if "error" in s:
                lines.append(f"| {r['n']:.0e} | {s['step']} | {s['error']} | | |")
                continue
            lines.append(f"| {r['n']:.0e} | {s['step']} | {s['wall_s']:.2f} | {s['peak_rss_mb']:.0f} | "
                         f"{s['wall_s'] / r['n'] * 1e6:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=float)
    ap.add_argument("--dir", default="/tmp/scale")
    ap.add_argument("--anchors", action="store_true")
    ap.add_argument("--in-memory", action="store_true")
    ap.add_argument("--loop", action="store_true", help="also measure what `pplaw run` holds in memory (loop_state)")
    ap.add_argument("--simulate", type=float)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--json")
    ap.add_argument("--table", nargs="+", help="print the markdown table of these result files")
    ap.add_argument("--step")
    ap.add_argument("--data")
    ap.add_argument("--work")
    a = ap.parse_args()
    if a.table:
        print(table(a.table))
        return
    if a.step == "simulate":
        print(json.dumps(_simulate_worker(Path(a.data), *json.loads(a.work))))
        return
    if a.step:
        print(json.dumps(step(a.step, Path(a.data), Path(a.work))))
        return
    root = Path(a.dir)
    if a.simulate:
        res = simulate(int(a.simulate), a.shards, root, a.timeout)
    else:
        n = int(a.n)
        t0 = time.perf_counter()
        data = generate(n, root)
        gen_s = time.perf_counter() - t0
        work = root / f"work-{n:.0e}".replace("+", "")
        work.mkdir(parents=True, exist_ok=True)
        steps = ["landscape", "band", "target", "dos", "e2e"]
        if a.loop:
            steps.append("loop_state")
        if a.anchors:
            steps += ["duckdb_quantile", "duckdb_approx", "duckdb_band", "polars_quantile", "polars_band"]
        res = {"n": n, "generate_s": gen_s, "steps": [], "load_avg_start": os.getloadavg()}
        for s in steps:
            r = run_step(s, data, work, a.timeout)
            r["load_avg_1min"] = os.getloadavg()[0]  # the machine is shared: how busy it was
            res["steps"].append(r)
            print(json.dumps(r), flush=True)
        if a.in_memory:
            res["in_memory"] = in_memory(data)
        res["load_avg_end"] = os.getloadavg()
    text = json.dumps(res, indent=1, default=float)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
