"""Entry point of the ``pplaw`` command.

Each sub-command lives in ``pplaw/cli/<name>.py`` and defines ``main(argv) -> int``; it is imported only
when called, so ``pplaw landscape`` never pays for importing torch.
"""

from __future__ import annotations

import errno
import importlib
import sys

from pplaw.exceptions import NotBuiltError, PplawError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pplaw.cli.run", "the end-to-end loop: score, landscape, plan, train, fit, select, report"),
    "score": ("pplaw.cli.score", "chunk a corpus and score each chunk's perplexity with the base model"),
    "landscape": ("pplaw.cli.landscape", "build the perplexity landscape of scored chunks (Parquet/JSONL)"),
    "sample": ("pplaw.cli.sample", "draw a subset to a token budget and target PPL mean/std, or by DOS"),
    "export": ("pplaw.cli.export", "write a finished run's final subset as a publishable dataset (card, Hub push)"),
    "train": ("pplaw.cli.train", "continual pre-training of one run (TRL), also under `accelerate launch`"),
    "evaluate": ("pplaw.cli.evaluate", "held-out losses and lm-eval benchmark suites for a model"),
    "tasks": ("pplaw.cli.tasks", "list or export the benchmark suites' local task data"),
    "fit": ("pplaw.cli.fit", "fit a scaling law to run records, with bootstrap CIs and plots"),
}


# environment errors: said in one line with what to do, not as a traceback
_ENV_ERRNOS = {
    errno.ENOSPC: "Free some space and run the same command again: finished work is kept and it resumes.",
    errno.EDQUOT: "Free some space (disk quota) and run the same command again: it resumes.",
    errno.EACCES: "Choose a folder you may write to (--out), or fix its permissions.",
    errno.EPERM: "Choose a folder you may write to (--out), or fix its permissions.",
    errno.EROFS: "The file system is read-only: choose another folder (--out).",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: pplaw <command> [options]   (pplaw <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from pplaw import __version__

        print(f"pplaw {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"pplaw: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except NotBuiltError as err:  # the Rust extension is missing: a set-up problem, not the user's input
        print(f"pplaw {name}: error: {err}", file=sys.stderr)
        return 3
    except PplawError as err:
        print(f"pplaw {name}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        if err.errno not in _ENV_ERRNOS:
            raise
        where = f" {err.filename!r}" if err.filename else ""
        print(f"pplaw {name}: error: cannot write{where}: {err.strerror or err}. {_ENV_ERRNOS[err.errno]}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pplaw {name}: interrupted; finished outputs were kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
