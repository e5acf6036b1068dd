"""
Command line: ``art-fastat train`` trains a method under a benchmark protocol and evaluates it; ``art-fastat
evaluate`` evaluates saved weights; ``art-fastat bench`` trains and evaluates several methods and writes a leaderboard
(:mod:`art_fastat.bench`); ``art-fastat export`` writes a run's model as a folder to publish
(:mod:`art_fastat.export`). Methods come from :data:`art_fastat.trainers.TRAINERS`, so a new trainer is
available here once registered there; its own arguments are passed as ``--option name=value``.
"""

from __future__ import annotations

import argparse
import ast
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import torch

from art_fastat._validation import MAX_INT
from art_fastat.evaluation.runners import ATTACKS

logger = logging.getLogger(__name__)

#: Whether this process joined a torchrun process group in :func:`_join_torchrun` (and leaves it at the end).
_JOINED = False


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """
    ``["alpha=0.1", "random_start=False"]`` -> ``{"alpha": 0.1, "random_start": False}``: values are Python literals,
    anything else stays a string.

    :param pairs: ``NAME=VALUE`` strings.
    :return: The options.
    """
    options = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name.isidentifier():
            raise ValueError(f"--option must be NAME=VALUE, got {pair!r}")
        try:
            options[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[name] = value
    return options


class UsageError(SystemExit):
    """Exit status 2 with one line on stderr naming the option: raised before any training starts."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message
        print(message, file=sys.stderr)

    def __str__(self) -> str:
        return f"{self.message} (exit status 2)"


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``art-fastat train: error: argument --n-eval: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


def _eps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:  # every protocol's clip_values are (0, 1)
        raise argparse.ArgumentTypeError(f"eps must be in (0, 1] (the width of clip_values), got {text}")
    return value


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if not minimum <= value <= MAX_INT:
            raise argparse.ArgumentTypeError(f"must be an integer in [{minimum}, {MAX_INT}], got {value}")
        return value

    return parse


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _directory(text: str) -> str:
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a directory")
    return text


def _existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text} does not exist or is not a file")
    return text


def _parse_attacks(text: str) -> tuple[str, ...]:
    attacks = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        raise argparse.ArgumentTypeError(f"--attacks must be a comma-separated subset of {','.join(ATTACKS)}")
    return attacks


def _build_parser() -> argparse.ArgumentParser:
    from art_fastat.protocols import PROTOCOLS
    from art_fastat.trainers import TRAINERS

    parser = _Parser(prog="art-fastat", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)

    def common(command: argparse.ArgumentParser) -> None:
        command.add_argument("--protocol", choices=sorted(PROTOCOLS), default="digits", help="benchmark protocol")
        command.add_argument("--data-dir", help="directory of the protocol's data files (mnist10k, cifar10)")
        command.add_argument("--eps", type=_eps, help="L-inf radius (default: the protocol's)")
        command.add_argument("--device", help="cpu or cuda (default: cuda when available)")
        command.add_argument("--attacks", type=_parse_attacks, default=ATTACKS, help="comma-separated, e.g. pgd,cw")
        command.add_argument("--n-eval", type=_integer(1), help="evaluate on the first N test images (default: all)")
        command.add_argument("--seed", type=_integer(0), default=0)

    train = commands.add_parser("train", help="train a method under a protocol, then evaluate it")
    train.add_argument("--method", choices=sorted(TRAINERS), required=True)
    common(train)
    train.add_argument("--epochs", type=_integer(1), help="number of epochs (default: the protocol's)")
    train.add_argument("--batch-size", type=_integer(1), help="minibatch size (default: the protocol's)")
    train.add_argument("--lr", type=_positive_number, help="peak learning rate (default: the protocol's)")
    train.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="method argument")
    train.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint if present")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--tensorboard", type=_directory, metavar="DIR",
                       help="write the per-epoch history to TensorBoard files in DIR (needs tensorboard)")  # fmt: skip
    train.add_argument("--out", type=_directory, required=True, help="output directory")

    evaluate = commands.add_parser("evaluate", help="evaluate saved weights under a protocol")
    evaluate.add_argument("--checkpoint", type=_existing_file, required=True,
                          help="model.pt written by train, or an engine checkpoint")  # fmt: skip
    common(evaluate)
    evaluate.add_argument("--out", type=_directory, help="directory for report.json and report.md")

    from art_fastat.bench import METHODS

    bench = commands.add_parser("bench", help="train and evaluate several methods; write a leaderboard and plots")
    bench.add_argument("--methods", type=_parse_methods, default=METHODS,
                       help=f"comma-separated (default: all): {','.join(METHODS)}")  # fmt: skip
    common(bench)
    bench.add_argument("--seeds", type=_integer(0), nargs="+", metavar="S",
                       help="seeds, one run of every method each, e.g. --seeds 0 1 2 (default: --seed)")  # fmt: skip
    bench.set_defaults(seed=None)  # --seed S is --seeds S
    for attack in ATTACKS:
        bench.add_argument(f"--n-eval-{attack}", type=_integer(1), nargs="+", metavar="N",
                           help=f"run {attack} on the first N test images of the first seed (a second number: of "
                           "the other seeds; default: all --n-eval)")  # fmt: skip
    bench.add_argument("--epochs", type=_integer(1), help="epochs of every method (default: the protocol's)")
    bench.add_argument("--quiet", action="store_true", help="no progress bars")
    bench.add_argument("--finished-only", action="store_true",
                       help="train and evaluate nothing: write the leaderboard of the runs already finished in --out "
                            "(a bench run in parts)")  # fmt: skip
    bench.add_argument("--out", type=_directory, required=True,
                       help="output directory (re-running skips finished runs)")  # fmt: skip

    export = commands.add_parser("export", help="write a run's model as a folder to publish on the Hugging Face Hub")
    export.add_argument("run_dir", type=_existing_directory, metavar="RUN_DIR", help="a directory of train or bench")
    export.add_argument("--out", type=_directory, required=True, help="the folder to write")
    export.add_argument("--force", action="store_true", help="replace --out if it is not empty")
    export.add_argument("--license", default="mit", help="license id in the model card (default: mit)")
    return parser


def _existing_directory(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} does not exist or is not a directory")
    return text


def _parse_methods(text: str) -> tuple[str, ...]:
    from art_fastat.bench import METHODS

    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"unknown {unknown}: --methods must be a comma-separated subset of "
                                         f"{','.join(METHODS)}")  # fmt: skip
    return methods


def _train(args: argparse.Namespace) -> None:
    from art_fastat.protocols import get_protocol
    from art_fastat.runs import run_method

    protocol = get_protocol(args.protocol)
    data = protocol.load(args.data_dir)
    callbacks = []
    if args.tensorboard is not None:
        from art_fastat.monitoring import TensorBoardLogger

        try:
            callbacks.append(TensorBoardLogger(args.tensorboard))
        except ImportError as error:
            raise UsageError(f"art-fastat train: error: --tensorboard: {error}") from error
    device, _ = _join_torchrun(args.device)
    try:
        run = run_method(
            args.method, protocol=protocol, data=data, out=Path(args.out), eps=args.eps, device=device,
            seed=args.seed, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
            options=parse_options(args.option), resume=args.resume, attacks=args.attacks, n_eval=args.n_eval,
            verbose=not args.quiet, callbacks=callbacks,
        )  # fmt: skip
    finally:
        for callback in callbacks:
            callback.close()
    if run.report is None:  # under torchrun, rank 0 writes and evaluates; the ranks hold identical weights
        return
    print(f"## {args.method} on {protocol.name} (eps={run.eps:g}): {run.training_seconds:.1f} s of training\n")
    print(run.report.to_markdown())


def _join_torchrun(device: str | None) -> tuple[str | None, int]:
    """
    Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) join the process group, as every trainer then trains
    with DistributedDataParallel: NCCL with one GPU per local rank when CUDA is used, gloo on CPUs.

    :param device: The ``--device`` argument.
    :return: The device this process trains on, and its rank (0 without torchrun).
    """
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device, 0
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
        global _JOINED
        _JOINED = True
    return (f"cuda:{torch.cuda.current_device()}" if use_cuda else "cpu"), dist.get_rank()


def _evaluate(args: argparse.Namespace) -> None:
    from art_fastat.protocols import get_protocol
    from art_fastat.runs import evaluate_and_write

    protocol = get_protocol(args.protocol)
    _, _, x_test, y_test = protocol.load(args.data_dir)
    classifier = protocol.make_classifier(args.device, args.seed)
    path = Path(args.checkpoint)
    from art_fastat.engine import read_model_state

    try:
        state = read_model_state(path, classifier.device)
        classifier.model.load_state_dict(state)
    except Exception as error:
        raise ValueError(f"--checkpoint {path} holds no weights of the {protocol.model} model: {error}") from error
    eps = protocol.eps if args.eps is None else args.eps
    report = evaluate_and_write(classifier, protocol, x_test, y_test, eps, attacks=args.attacks, seed=args.seed,
                                n_eval=args.n_eval, out=Path(args.out) if args.out else None)  # fmt: skip
    print(report.to_markdown())


def _export(args: argparse.Namespace) -> None:
    from art_fastat.export import MODEL_INFO_FILE, export_run

    out = export_run(args.run_dir, args.out, force=args.force, license=args.license)
    print(f"Exported {args.run_dir} to {out}: {', '.join(sorted(p.name for p in out.iterdir()))}\n")
    print((out / MODEL_INFO_FILE).read_text())


def _bench(args: argparse.Namespace) -> None:
    from art_fastat.bench import bench

    if args.eps is not None:
        raise ValueError("--eps is for train and evaluate: bench runs every method at the protocol's eps")
    if args.seed is not None and args.seeds is not None:
        raise ValueError("give --seed S (one seed) or --seeds S [S ...], not both")
    seeds = args.seeds if args.seeds is not None else [0 if args.seed is None else args.seed]
    attack_sizes: dict[str, int | tuple[int, int]] = {}
    for attack in ATTACKS:
        sizes = getattr(args, f"n_eval_{attack}")
        if sizes is None:
            continue
        if len(sizes) > 2:
            raise ValueError(f"--n-eval-{attack} takes one or two numbers (first seed, other seeds), got {sizes}")
        if attack not in args.attacks:
            raise ValueError(f"--n-eval-{attack} sizes {attack}, which is not among --attacks {','.join(args.attacks)}")
        attack_sizes[attack] = (sizes[0], sizes[-1])
    bench(args.protocol, args.out, args.methods, data_dir=args.data_dir, device=args.device, seeds=seeds,
          n_eval=args.n_eval, attacks=args.attacks, attack_sizes=attack_sizes, epochs=args.epochs,
          verbose=not args.quiet, finished_only=args.finished_only)  # fmt: skip
    print((Path(args.out) / "leaderboard.md").read_text())


def main(argv: list[str] | None = None) -> None:
    """
    Entry point of the ``art-fastat`` command.

    :param argv: Arguments (default: ``sys.argv[1:]``).
    """
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        {"train": _train, "evaluate": _evaluate, "bench": _bench, "export": _export}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as error:  # refused before training: usage error
        raise UsageError(f"art-fastat: error: {error}") from error
    except FloatingPointError as error:  # the run diverged (the engine restored the last good epoch and stopped)
        print(f"art-fastat: error: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    finally:
        import torch.distributed as dist

        if _JOINED and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
