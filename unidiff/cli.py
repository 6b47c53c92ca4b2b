"""`unidiff` entry point: a thin dispatcher; each subcommand lives in its own module."""
from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function, one-line help).  Modules are imported lazily so that
# `unidiff --help` stays fast and a broken optional area cannot break the others.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": ("unidiff.train", "cli_main", "train a model or tokenizer from a YAML config (LightningCLI)"),
    "collect": ("unidiff.data.collect", "main", "collect expert episodes from a simulated env"),
    "bench": ("unidiff.bench", "main", "decoding latency, NFE and quality: cache / threshold / remask vs the AR twin"),
    "caption": ("unidiff.commands", "caption_main", "caption images with a bundle"),
    "generate": ("unidiff.commands", "generate_main", "generate images from text prompts"),
    "rollout": ("unidiff.commands", "rollout_main", "roll a bundle's policy out in an env"),
    "eval": ("unidiff.commands", "eval_main", "evaluate a tabletop bundle on all three tasks"),
    "demo": ("unidiff.demo", "main", "caption, generate and act with the shipped bundle; HTML report"),
}


def _usage() -> str:
    lines = ["usage: unidiff <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`unidiff <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unidiff: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    result = getattr(importlib.import_module(module), func)(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
