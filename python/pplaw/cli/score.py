"""``pplaw score --model PATH_OR_ID --data FILE_OR_DIR --out DIR``: chunk a corpus and score every chunk.

DATA is a .txt (one document per line by default, see --txt-sample-by), .jsonl/.json, .parquet or .csv
file, or a directory of files of one of these kinds (read in sorted path order). Documents are split into
chunks of --chunk-tokens tokens (pplaw.chunk_texts) and each chunk is scored with the base model
(pplaw.score_perplexity). Writes to DIR:

- ``scores-KKKKK-of-NNNNN.parquet``: one row per chunk: chunk_id, doc_id, chunk_index, n_tokens,
  nll_sum, n_scored, ppl (and input_ids unless --no-keep-input-ids). Shard k holds the chunks of
  documents [k * shard_docs, (k+1) * shard_docs). ``pplaw landscape DIR`` reads them directly.
- ``manifest.yaml``: the settings; a re-run with other settings into the same DIR is refused.
- ``summary.yaml``: documents, chunks, tokens, drops and the corpus PPL.

Each shard is written atomically (temp file + rename) when done; a re-run skips finished shards, so an
interrupted run resumes where it stopped. The job itself is :func:`pplaw.score.job.run_score`.

``--slurm RECIPE.yaml [--slurm_tasks N]`` scores the shards as a Slurm job array (the recipe's ``slurm:``
section: partition, account, time_min, gpus_per_node, ...), N tasks each scoring every N-th shard, then
writes the summary here (:func:`pplaw.pipeline.slurm_executor.score_array`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pplaw.score.job import ScoreConfig, run_score, summary_lines


def main(argv: list[str]) -> int:
    from pplaw.config import parse_config

    from pplaw.cluster import ScoreClusterOptions

    cfg, cl = parse_config([ScoreConfig, ScoreClusterOptions], argv, prog="pplaw score",
                           description=__doc__.split("\n\n")[0])
    if cl.slurm:
        from pplaw.pipeline.slurm_executor import load_slurm, score_array

        slurm = load_slurm(cl.slurm)
        if slurm.cluster == "slurm":
            from pplaw.pipeline.reach import check_slurm_partition

            check_slurm_partition(slurm.partition, f"{cl.slurm}: slurm.partition")
        summary = score_array(cfg, slurm, cl.slurm_tasks, cpus=slurm.cpus_per_task or 1,
                              gpus=slurm.gpus_per_node or 0)
    else:
        summary = run_score(cfg)
    print("\n".join(summary_lines(summary, Path(cfg.out))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
