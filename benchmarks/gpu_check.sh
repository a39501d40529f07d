#!/usr/bin/env bash
# gpu_check.sh: every check that needs a CUDA GPU, in one prepared run (issue 29).
#
#   bash benchmarks/gpu_check.sh                # on the GPU machine: all steps, ~9 min in all
#   bash benchmarks/gpu_check.sh --dry-run      # the same steps on the CPU, tiny shapes, Triton interpreter
#
# A GPU is lent for ~15 minutes, start-up included, so this script is written and tested (the dry run,
# tests/benchmarks/test_gpu_check.py, in CI) before a GPU minute is spent. Steps, in order, each under its own
# time limit; a failed or timed-out step is recorded and the next one runs:
#   setup        a Python with CUDA torch and the project's dependencies (reused when present)
#   gpu_tests    pytest of the files holding the gpu-marked tests (kernel vs the float64/fp32 oracle on odd
#                and real shapes, fp32/fp16/bf16; the scorer on CUDA vs CPU; with_rank)
#   nll_target   bench_nll_kernel.py --target-only (M=8192 H=4096 V=131072 bf16; dry run: --smoke)
#   nll_grid     bench_nll_kernel.py --grid, with whatever time the later steps leave (dry run: skipped)
#   scoring      bench_scoring.py --device cuda (dry run: --device cpu, a few thousand tokens)
#   pipeline     pplaw run of the micro recipe, scoring (bf16) and training on CUDA (dry run: on the CPU)
# Every output goes under one folder (--out, default ${OUT:-benchmarks/gpu_check_out}/gpu_check): one log
# per step, summary.tsv (step, status, rc, seconds, note) and summary.json (those, the environment and the key
# numbers). The device machine sends back at most 8 files, so the folder holds exactly these 8 and scratch
# (the micro run's folder, model caches) goes to --work (default: <out>/work, or a /tmp folder under $OUT).
#
# Options:
#   --dry-run        CPU only (CUDA hidden), TRITON_INTERPRET=1, tiny shapes
#   --skip-setup     use $PYTHON (default: .venv/bin/python if present, else python3) as it is
#   --out DIR        output folder
#   --work DIR       scratch folder
#   --budget-s N     wall-clock budget of the whole run (default 540 on GPU, 300 dry); a step is skipped
#                    when what is left is under its minimum, and nll_grid gets only what the later steps leave
# Per-step limits (seconds), from the environment: GPU_CHECK_LIMIT_SETUP, _GPU_TESTS, _NLL_TARGET, _NLL_GRID,
# _SCORING, _PIPELINE (e.g. GPU_CHECK_LIMIT_SCORING=200); GPU_CHECK_MIN_STEP_S (default 20): the least time a
# step is started with. $PYTHON: the interpreter (default .venv/bin/python, else python3).
# Exit status: 0 when every step is ok or skipped, 1 when one failed or timed out (all steps still ran).
set -euo pipefail
# the whole script is one brace group, read in full before it runs: editing or checking out this file
# while a run is under way cannot change what that run does
{
cd "$(dirname "$0")/.."
REPO=$(pwd)

DRY=0
SKIP_SETUP=0
OUTDIR=""
WORK=""
BUDGET=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --skip-setup) SKIP_SETUP=1 ;;
    --out) OUTDIR=${2:?--out needs a folder}; shift ;;
    --work) WORK=${2:?--work needs a folder}; shift ;;
    --budget-s) BUDGET=${2:?--budget-s needs seconds}; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown option '$1' (expected --dry-run, --skip-setup, --out DIR, --work DIR, --budget-s N)" >&2
       exit 2 ;;
  esac
  shift
done
case "${BUDGET:-0}" in
  ''|*[!0-9]*) echo "gpu_check.sh: --budget-s '$BUDGET' is not a whole number of seconds" >&2; exit 2 ;;
esac

if [ -z "$OUTDIR" ]; then OUTDIR="${OUT:-benchmarks/gpu_check_out}/gpu_check"; fi
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
if [ -z "$WORK" ]; then
  # under the device tool's $OUT only 8 files come back: keep scratch out of it
  if [ -n "${OUT:-}" ] && [[ "$OUTDIR" == "$(cd "$OUT" 2>/dev/null && pwd)"* ]]; then
    WORK="${TMPDIR:-/tmp}/pplaw_gpu_check_work"
  else
    WORK="$OUTDIR/work"
  fi
fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
rm -f "$OUTDIR"/*.log "$OUTDIR/summary.tsv" "$OUTDIR/summary.json"

# Per-step limits (GPU / dry run) and the least time a step is started with.
if [ "$DRY" = 1 ]; then
  : "${BUDGET:=300}"
  L_SETUP=60 L_GPU_TESTS=90 L_NLL_TARGET=90 L_NLL_GRID=0 L_SCORING=120 L_PIPELINE=180
else
  : "${BUDGET:=540}"
  L_SETUP=90 L_GPU_TESTS=150 L_NLL_TARGET=90 L_NLL_GRID=150 L_SCORING=150 L_PIPELINE=150
fi
L_SETUP=${GPU_CHECK_LIMIT_SETUP:-$L_SETUP}
L_GPU_TESTS=${GPU_CHECK_LIMIT_GPU_TESTS:-$L_GPU_TESTS}
L_NLL_TARGET=${GPU_CHECK_LIMIT_NLL_TARGET:-$L_NLL_TARGET}
L_NLL_GRID=${GPU_CHECK_LIMIT_NLL_GRID:-$L_NLL_GRID}
L_SCORING=${GPU_CHECK_LIMIT_SCORING:-$L_SCORING}
L_PIPELINE=${GPU_CHECK_LIMIT_PIPELINE:-$L_PIPELINE}
MIN_STEP=${GPU_CHECK_MIN_STEP_S:-20}
for v in L_SETUP L_GPU_TESTS L_NLL_TARGET L_NLL_GRID L_SCORING L_PIPELINE MIN_STEP; do
  case "${!v}" in
    ''|*[!0-9]*) echo "gpu_check.sh: a step limit is '${!v}', not a whole number of seconds (GPU_CHECK_LIMIT_*," \
                      "GPU_CHECK_MIN_STEP_S)" >&2; exit 2 ;;
  esac
done

export PYTHONPATH="$REPO/python:$REPO/kernels${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg
export TQDM_DISABLE=1 PPLAW_GPU_CHECK=1
if [ "$DRY" = 1 ]; then
  # CPU only: hide any GPU, and run the Triton kernels under the interpreter (read at kernel import)
  export CUDA_VISIBLE_DEVICES="" TRITON_INTERPRET=1
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi

START=$(date +%s)
TSV="$OUTDIR/summary.tsv"
printf 'step\tstatus\trc\tseconds\tlimit_s\tnote\n' >"$TSV"
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY="$REPO/.venv/bin/python"; else PY=$(command -v python3 || command -v python); fi
fi

left() { echo $((BUDGET - ($(date +%s) - START))); }

record() {  # step status rc seconds limit note
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" >>"$TSV"
  printf '[gpu_check] %-11s %-8s rc=%-4s %4ss  %s\n' "$1" "$2" "$3" "$4" "$6"
}

skip() {  # step reason: recorded with an empty log that says why
  echo "skipped: $2" >"$OUTDIR/$1.log"
  record "$1" skipped - 0 0 "$2"
}

# run_step NAME LIMIT CMD...: runs CMD under `timeout`, its stdout and stderr in NAME.log; never fatal.
run_step() {
  local name=$1 limit=$2 rem
  shift 2
  rem=$(left)
  if [ "$limit" -gt "$rem" ]; then limit=$rem; fi
  if [ "$limit" -lt "$MIN_STEP" ]; then
    skip "$name" "budget: ${rem}s of --budget-s ${BUDGET} left, under the ${MIN_STEP}s a step needs"
    return 0
  fi
  local log="$OUTDIR/$name.log" t0 rc status note=""
  echo "[gpu_check] $name: $* (limit ${limit}s)"
  { echo "# $name: $*"; echo "# limit ${limit}s, started $(date -u +%FT%TZ)"; } >"$log"
  t0=$(date +%s)
  set +e
  timeout -k 10 "$limit" "$@" >>"$log" 2>&1 </dev/null
  rc=$?
  set -e
  local secs=$(($(date +%s) - t0))
  case $rc in
    0) status=ok ;;
    124|137) status=timeout; note="killed after ${limit}s (the log holds what it printed)" ;;
    *) status=failed; note="exit $rc: $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-100 | tr '\t' ' ')" ;;
  esac
  echo "# exit $rc after ${secs}s" >>"$log"
  record "$name" "$status" "$rc" "$secs" "$limit" "$note"
}

# ---------------------------------------------------------------- setup
# On the device machine (no registry reachable) the image's python3 already holds the CUDA build of torch:
# it is used as is when the project's dependencies import; else a .venv that sees its packages gets the
# missing ones, from wheels in .whl/ when present (carried; see benchmarks/RESULTS.md), else from the index
# with the project's own pins (pyproject.toml). The Rust core is built (make build) only when it is missing.
setup() {
  set -e
  echo "python: $PY"
  "$PY" -c 'import sys; print(sys.version)'
  if [ "$SKIP_SETUP" = 1 ]; then
    echo "--skip-setup: using $PY as it is"
  else
    local missing
    missing=$("$PY" benchmarks/gpu_check_env.py missing)
    if [ -n "$missing" ]; then
      echo "missing: $missing"
      if [ ! -d .whl ] && ! "$PY" -c 'import os, socket, urllib.parse as u
url = u.urlparse(os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple"))
socket.create_connection((url.hostname, url.port or 443), timeout=5).close()' 2>/dev/null; then
        # fail in seconds, not after pip's retries: the later steps that need none of these still run
        echo "no package index reachable and no .whl/ folder: cannot install $missing" \
             "(carry wheels made by benchmarks/gpu_check_wheels.py as .whl)"
        return 1
      fi
      if [ "$PY" != "$REPO/.venv/bin/python" ]; then
        local base=$PY
        "$base" -m venv .venv
        # the base interpreter's packages (its CUDA torch) stay visible: no torch download
        "$base" -c 'import site, sysconfig; print("\n".join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]] + site.getsitepackages())))' \
          >"$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_gpu_check_base.pth"
        PY="$REPO/.venv/bin/python"
      fi
      local reqs
      reqs=$("$PY" benchmarks/gpu_check_env.py requirements)
      if [ -d .whl ]; then
        # shellcheck disable=SC2086
        "$PY" -m pip install --no-index --find-links .whl $reqs
      else
        # shellcheck disable=SC2086
        "$PY" -m pip install --retries 1 --timeout 15 $reqs
      fi
      missing=$("$PY" benchmarks/gpu_check_env.py missing)
      if [ -n "$missing" ]; then echo "still missing after the install: $missing"; return 1; fi
    fi
    if ! "$PY" -c 'import pplaw._core' 2>/dev/null; then
      if command -v cargo >/dev/null; then
        "$PY" -m pip install "maturin>=1.7,<2" && make build VENV="$(dirname "$(dirname "$PY")")"
      else
        echo "pplaw._core (the Rust core) is not built and there is no cargo here: build it where Rust is" \
             "(make build) and carry python/pplaw/_core.abi3.so"
        return 1
      fi
    fi
  fi
  "$PY" benchmarks/gpu_check_env.py info | tee "$WORK/env.json"
}

ENV_LOG="$OUTDIR/setup.log"
export -f setup
export PY REPO SKIP_SETUP WORK
run_step setup "$L_SETUP" bash -c setup
# setup may have made .venv: later steps use it
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && [ "$SKIP_SETUP" = 0 ]; then PY="$REPO/.venv/bin/python"; fi
if [ ! -s "$WORK/env.json" ]; then "$PY" benchmarks/gpu_check_env.py info >"$WORK/env.json" 2>>"$ENV_LOG" || true; fi
HAS_LM_EVAL=$("$PY" -c 'import importlib.util as u; print(int(u.find_spec("lm_eval") is not None))' 2>/dev/null || echo 0)

# ---------------------------------------------------------------- (a) pytest -m gpu
# Every test of the files that hold gpu-marked tests: the gpu ones (real shapes, the scorer on CUDA vs CPU,
# with_rank) and, beside them, the kernel's odd-shape fp32/fp16/bf16 tests against the float64 oracle, which
# run compiled on CUDA. Only these files are collected, so a test module elsewhere that needs a package the
# check does not install (polars, ray) cannot stop the run. Without CUDA (the dry run) the odd-shape tests run
# under the interpreter and tests/conftest.py skips the gpu ones (far too big for the interpreter).
mapfile -t GPU_FILES < <(grep -rlE 'mark\.gpu\b' tests --include='test_*.py' | sort)
if [ "${#GPU_FILES[@]}" = 0 ]; then
  skip gpu_tests "no test file under tests/ marks a test gpu"
else
  run_step gpu_tests "$L_GPU_TESTS" "$PY" -m pytest -q -rs -p no:cacheprovider "${GPU_FILES[@]}"
fi

# ---------------------------------------------------------------- (b) the fused kernel
if [ "$DRY" = 1 ]; then
  run_step nll_target "$L_NLL_TARGET" "$PY" benchmarks/bench_nll_kernel.py --smoke --warmup 1 --iters 2
  skip nll_grid "dry run: the shape grid needs a GPU (--smoke covered the plumbing)"
else
  run_step nll_target "$L_NLL_TARGET" "$PY" benchmarks/bench_nll_kernel.py --target-only
  # the grid gets what scoring and pipeline leave (it prints shape by shape: a timeout keeps what it measured)
  reserve=$((L_SCORING + L_PIPELINE))
  grid=$(($(left) - reserve))
  if [ "$grid" -gt "$L_NLL_GRID" ]; then grid=$L_NLL_GRID; fi
  if [ "$grid" -lt "$MIN_STEP" ]; then
    skip nll_grid "budget: $(left)s left, ${reserve}s kept for scoring and pipeline"
  else
    run_step nll_grid "$grid" "$PY" benchmarks/bench_nll_kernel.py --grid
  fi
fi

# ---------------------------------------------------------------- (c) scoring
LM_EVAL_FLAG=()
if [ "$HAS_LM_EVAL" != 1 ]; then LM_EVAL_FLAG=(--skip-lm-eval); fi
if [ "$DRY" = 1 ]; then
  run_step scoring "$L_SCORING" "$PY" benchmarks/bench_scoring.py --device cpu --tokens 1500 --chunk-tokens 128 \
    --rounds 1 --skip-lm-eval
else
  # two rounds: GPU timings hardly vary, and the time is better spent on the grid
  run_step scoring "$L_SCORING" "$PY" benchmarks/bench_scoring.py --device cuda --rounds 2 ${LM_EVAL_FLAG[@]+"${LM_EVAL_FLAG[@]}"}
fi

# ---------------------------------------------------------------- (d) the micro pplaw run
# tests/pipeline/micro.yaml without its size that fails on purpose (40 tokens), so a clean run exits 0;
# training and scoring use CUDA whenever torch sees it (sweep.py: use_cpu = no CUDA; the scorer: cuda when
# available), and scoring.dtype=bfloat16 scores in bf16 there.
RUN_DIR="$WORK/micro_run"
rm -rf "$RUN_DIR"
if [ "$DRY" = 1 ]; then
  PIPE_ARGS=("plan.sizes=[0.1, 0.2]" "select.seeds=[0]" "baselines.methods=[random, full]" scoring.dtype=float32)
else
  PIPE_ARGS=("plan.sizes=[0.1, 0.2]" scoring.dtype=bfloat16)
fi
run_step pipeline "$L_PIPELINE" "$PY" -m pplaw.cli.main run tests/pipeline/micro.yaml --out "$RUN_DIR" \
  "cache_dir=$WORK/model_cache" "${PIPE_ARGS[@]}"

# ---------------------------------------------------------------- summary
# with the check's Python, else any python3 (the helper needs only the standard library)
SUMMARY=(benchmarks/gpu_check_env.py summary --out "$OUTDIR" --env "$WORK/env.json" --dry-run "$DRY"
         --run-dir "$RUN_DIR" --budget-s "$BUDGET" --seconds "$(($(date +%s) - START))")
"$PY" "${SUMMARY[@]}" 2>/dev/null || python3 "${SUMMARY[@]}"
if cut -f2 "$TSV" | grep -qxE 'failed|timeout'; then exit 1; fi
exit 0
}
