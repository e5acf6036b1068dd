"""
The GPU benchmark (issue 16): one prepared script that runs as is on one H100/H200 in under 8 minutes.

Synthetic CIFAR-shaped data held in device memory (50,000 images, fixed seed), PreActResNet18, batch 512, bf16
autocast and channels-last memory format, eager and ``torch.compile``:

1. images per second and seconds per epoch (a timed slice of an epoch after a warm-up slice) for a hand-written
   natural loop (locuslab/fast_adversarial's shape) and for natural, Fast, RAT (PGD-10), Free-8, GAAT, ATCD, ATLAS,
   L2L (T=5) and DAT+GAAT on the engine; their ratios to natural and to the hand-written loop; peak GPU memory; the
   extrapolated time of P2's Fast run (15 epochs);
2. the attacks alone (GAAT, HMC, L2L beside torchattacks' PGD-10), images per second;
3. ``art_fastat.evaluate`` on the device (ART PGD-50-10 and AutoAttack standard on 500 images);
4. a one-process NCCL ``torchrun`` smoke test (gloo on CPU);
5. kill-and-resume on the device under deterministic algorithms: a run killed with SIGKILL after its first epoch's
   checkpoint and resumed ends with the weights of an uninterrupted run, bit for bit.

Each section appends its table to the report as soon as it ends, so a run stopped at its time limit keeps what it
measured; the compiled runs come last and stop starting new methods once ``--budget`` seconds have passed.

    python benchmarks/gpu.py                      # on the GPU machine: writes docs/results/gpu.md
    python benchmarks/gpu.py --tiny --out DIR     # the same code paths on CPU in seconds (tests/test_gpu_benchmark.py)

The GPU machine has no package registry: docs/gpu.md says how ART, torchattacks and pyautoattack travel as wheels.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
EPS = 8 / 255
#: The methods timed on the engine: label -> (trainer name, arguments).
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "natural": ("natural", {}),
    "Fast (FGSM-RS)": ("fast", {}),
    "RAT (PGD-10)": ("pgd", {"steps": 10}),
    "Free-8": ("free", {"replays": 8}),
    "GAAT (T=10)": ("gaat", {}),
    "ATCD": ("atcd", {}),
    "ATLAS": ("atlas", {}),
    "L2L (T=5)": ("l2l", {"steps": 5}),
    "DAT+GAAT": ("dat+gaat", {}),
}


@dataclass
class Settings:
    """What one run measures: the full GPU sizes, or ``--tiny``'s."""

    device: torch.device
    n: int
    batch_size: int
    warmup_batches: int
    timed_batches: int
    n_eval: int
    attack_batches: int
    tiny: bool

    @property
    def compile_options(self) -> bool | dict[str, str]:
        """``compile`` of the trainers: inductor on the GPU; ``--tiny`` traces with aot_eager (no code generation)."""
        return {"backend": "aot_eager"} if self.tiny else True

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)


def settings(tiny: bool, device: str | None) -> Settings:
    if tiny:
        return Settings(torch.device(device or "cpu"), 128, 32, 1, 1, 8, 1, True)
    if not torch.cuda.is_available() and device is None:
        raise SystemExit("benchmarks/gpu.py needs a CUDA device (or --tiny, or --device cpu to force a CPU run)")
    return Settings(torch.device(device or "cuda"), 50_000, 512, 3, 20, 500, 5, False)


def network(tiny: bool) -> nn.Module:
    """PreActResNet18, or for ``--tiny`` a small network with BatchNorm (the same code paths, seconds on CPU)."""
    if not tiny:
        from art_fastat.models import PreActResNet18

        return PreActResNet18()
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(128, 10),
    )  # fmt: skip


def synthetic_data(s: Settings) -> tuple[torch.Tensor, torch.Tensor]:
    """``s.n`` CIFAR-shaped images in [0, 1] and labels, on the device, in channels-last format (seed 0)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((s.n, *s.shape), generator=generator)
    y = torch.randint(0, 10, (s.n,), generator=generator)
    return x.to(s.device).contiguous(memory_format=torch.channels_last), y.to(s.device)


def classifier_for(model: nn.Module, s: Settings) -> Any:
    from art.estimators.classification import PyTorchClassifier

    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    return PyTorchClassifier(model, nn.CrossEntropyLoss(), s.shape, 10, optimizer=optimizer, clip_values=(0.0, 1.0),
                             device_type="gpu" if s.device.type == "cuda" else "cpu")  # fmt: skip


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


# ----------------------------------------------------------------------------------------------- training


def hand_written_natural(initial: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings, compiled: bool) -> dict:
    """locuslab/fast_adversarial's loop with bf16 autocast: shuffle, forward, backward, step."""
    net = copy.deepcopy(initial).to(s.device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model = net if not compiled else torch.compile(net, **({} if s.compile_options is True else s.compile_options))
    generator = torch.Generator(device=s.device).manual_seed(0)

    def run(batches: int) -> None:
        order = torch.randperm(batches * s.batch_size, device=s.device, generator=generator)
        for index in order.split(s.batch_size):
            with torch.autocast(s.device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    started = time.perf_counter()
    run(s.warmup_batches)
    synchronize(s.device)
    warmup = time.perf_counter() - started
    reset_peak(s.device)
    started = time.perf_counter()
    run(s.timed_batches)
    synchronize(s.device)
    return {"seconds": time.perf_counter() - started, "warmup_seconds": warmup, "passes": 1}


def engine_method(
    name: str, arguments: dict[str, Any], initial: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings,
    compiled: bool,
) -> dict:  # fmt: skip
    """One method on the engine: a warm-up slice, then a timed slice, on one trainer (compiled code is reused)."""
    from art_fastat.trainers import TRAINERS

    classifier = classifier_for(copy.deepcopy(initial), s)
    options = {"use_amp": True, "amp_dtype": torch.bfloat16, "channels_last": True, "seed": 0}
    options["compile"] = s.compile_options if compiled else False
    trainer = TRAINERS[name](classifier, EPS, **arguments, **options)
    nb_epochs = 2 if name.startswith("dat") else trainer.replays  # DAT: a natural epoch, then an adversarial one
    x_numpy, y_numpy = x.float().cpu().numpy(), y.cpu().numpy()  # fit takes numpy (ART's API) and moves it once

    def run(batches: int) -> float:
        n = batches * s.batch_size
        trainer.fit(x_numpy[:n], y_numpy[:n], batch_size=s.batch_size, nb_epochs=nb_epochs)
        return sum(record["seconds"] for record in trainer.history)

    started = time.perf_counter()
    run(s.warmup_batches)
    warmup = time.perf_counter() - started
    reset_peak(s.device)
    seconds = run(s.timed_batches)
    return {"seconds": seconds, "warmup_seconds": warmup, "passes": nb_epochs / trainer.replays}


def training_rows(initial: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings, compiled: bool,
                  deadline: float | None) -> list[dict]:  # fmt: skip
    """Every configuration of section 1 for one compile setting; past ``deadline``, the rest are marked skipped."""
    jobs: list[tuple[str, Callable[[], dict]]] = [
        ("hand-written natural", lambda: hand_written_natural(initial, x, y, s, compiled))
    ]
    for label, (name, arguments) in METHODS.items():
        jobs.append((label, lambda n=name, a=arguments: engine_method(n, a, initial, x, y, s, compiled)))
    rows = []
    for label, job in jobs:
        row: dict[str, Any] = {"method": label, "compile": compiled}
        if deadline is not None and time.perf_counter() > deadline:
            rows.append(row | {"error": "skipped: --budget spent"})
            continue
        try:
            result = job()
        except Exception as error:  # a method that cannot run this way is reported, not fatal
            rows.append(row | {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:150]}"})
            continue
        images = s.timed_batches * s.batch_size * result["passes"]
        row |= result | {"images_per_second": images / result["seconds"], "peak_gib": peak_gib(s.device)}
        row["epoch_seconds"] = 50_000 / row["images_per_second"]
        rows.append(row)
        print(f"  {label:22s} compile={compiled!s:5s} {row['images_per_second']:10.0f} img/s", flush=True)
    reference = {key: next((r for r in rows if r["method"] == key and "error" not in r), None)
                 for key in ("natural", "hand-written natural")}  # fmt: skip
    for row in rows:
        for key, column in (("natural", "vs_natural"), ("hand-written natural", "vs_hand_written")):
            if "error" not in row and reference[key] is not None:
                row[column] = row["epoch_seconds"] / reference[key]["epoch_seconds"]
    return rows


# ----------------------------------------------------------------------------------------------- attacks, evaluation


def attack_rows(initial: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings) -> list[dict]:
    """The attacks alone on an eval-mode network under bf16 autocast: images per second."""
    import torchattacks

    from art_fastat.attacks import GAAT, HMC, L2L, RNNOptimizer

    model = copy.deepcopy(initial).to(s.device, memory_format=torch.channels_last).eval()
    rnn = RNNOptimizer().to(s.device)
    attacks = {
        "torchattacks PGD-10": torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=10, random_start=True),
        "GAAT (T=10)": GAAT(model, eps=EPS),
        "HMC (ATCD's defaults)": HMC(model, eps=EPS),
        "L2L (T=5)": L2L(model, rnn, eps=EPS, steps=5),
    }
    images, labels = x[: s.batch_size], y[: s.batch_size]
    rows = []
    for label, attack in attacks.items():
        with torch.autocast(s.device.type, dtype=torch.bfloat16):
            attack(images, labels)  # warm-up
            synchronize(s.device)
            started = time.perf_counter()
            for _ in range(s.attack_batches):
                adversarial = attack(images, labels)
            synchronize(s.device)
        seconds = time.perf_counter() - started
        inside = bool(((adversarial - images).abs() <= EPS + 1e-6).all())
        rows.append({"attack": label, "images_per_second": s.attack_batches * len(images) / seconds, "in_ball": inside})
        print(f"  {label:22s} {rows[-1]['images_per_second']:10.0f} img/s", flush=True)
    return rows


def evaluation_row(initial: nn.Module, x: torch.Tensor, y: torch.Tensor, s: Settings) -> dict:
    """``art_fastat.evaluate`` on the device: ART PGD-50-10 and AutoAttack standard, timed separately."""
    from art_fastat import evaluate

    classifier = classifier_for(copy.deepcopy(initial).to(memory_format=torch.channels_last), s)
    x_eval, y_eval = x[: s.n_eval].float().cpu().numpy(), y[: s.n_eval].cpu().numpy()
    row: dict[str, Any] = {"images": s.n_eval}
    for attack, options in (("pgd", {"pgd_restarts": 10, "pgd_step_size": 2 / 255}), ("autoattack", {})):
        started = time.perf_counter()
        report = evaluate(classifier, x_eval, y_eval, EPS, attacks=attack, batch_size=s.n_eval, **options)
        row[f"{attack}_seconds"] = time.perf_counter() - started
        row[f"{attack}_accuracy"] = report.robust_accuracy[attack]
    row["clean_accuracy"] = report.clean_accuracy
    return row


# ----------------------------------------------------------------------------------------------- child processes


def child_environment() -> dict[str, str]:
    environment = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8", PYTHONUNBUFFERED="1")
    environment["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), environment.get("PYTHONPATH", "")])
    return environment


def torchrun_smoke(s: Settings) -> dict:
    """One process under ``torchrun`` with NCCL (gloo on CPU): the engine trains a few Fast steps in it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", __file__,
               "--child", "torchrun", "--device", s.device.type] + (["--tiny"] if s.tiny else [])  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=child_environment(), timeout=300)
    seconds = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("TORCHRUN_OK ")]
    if done.returncode != 0 or not lines:
        return {"ok": False, "seconds": seconds, "error": (done.stderr or done.stdout).strip().splitlines()[-3:]}
    return {"ok": True, "seconds": seconds} | json.loads(lines[-1].removeprefix("TORCHRUN_OK "))


def kill_and_resume(s: Settings) -> dict:
    """
    An uninterrupted run and a run killed after epoch 1's checkpoint, then resumed: equal weights, bit for bit. The
    uninterrupted run goes beside the other two (it shares only the machine with them).
    """
    with tempfile.TemporaryDirectory() as directory:

        def command(mode: str) -> list[str]:
            return [sys.executable, __file__, "--child", f"resume-{mode}", "--child-dir", directory,
                    "--device", s.device.type] + (["--tiny"] if s.tiny else [])  # fmt: skip

        alongside = subprocess.Popen(command("uninterrupted"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=child_environment())  # fmt: skip
        runs = {mode: subprocess.run(command(mode), capture_output=True, text=True, env=child_environment(),
                                     timeout=300) for mode in ("killed", "resumed")}  # fmt: skip
        _, stderr = alongside.communicate(timeout=300)
        runs["uninterrupted"] = subprocess.CompletedProcess(alongside.args, alongside.returncode, "", stderr)
        for mode in ("uninterrupted", "resumed"):
            if runs[mode].returncode != 0:
                return {"equal": False, "error": runs[mode].stderr.strip().splitlines()[-3:], "mode": mode}
        uninterrupted = torch.load(Path(directory) / "uninterrupted.pt", weights_only=True)
        resumed = torch.load(Path(directory) / "resumed.pt", weights_only=True)
    equal = uninterrupted.keys() == resumed.keys() and all(torch.equal(uninterrupted[k], resumed[k]) for k in resumed)
    return {"equal": equal, "killed_by_signal": runs["killed"].returncode == -signal.SIGKILL, "tensors": len(resumed)}


def run_child(args: argparse.Namespace) -> None:
    s = settings(args.tiny, args.device)
    torch.manual_seed(0)
    initial = network(s.tiny)
    x, y = synthetic_data(s)
    x_numpy, y_numpy = x[: 4 * s.batch_size].float().cpu().numpy(), y[: 4 * s.batch_size].cpu().numpy()
    from art_fastat.engine import checkpoints
    from art_fastat.trainers import AdversarialTrainerFast

    options: dict[str, Any] = {"use_amp": True, "channels_last": True, "seed": 0}
    if args.child == "torchrun":
        import torch.distributed as dist

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if s.device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if s.device.type == "cuda" else "gloo")
        total = torch.ones(1, device=s.device)
        dist.all_reduce(total)
        trainer = AdversarialTrainerFast(classifier_for(initial, s), EPS, **options)
        history = trainer.fit(x_numpy, y_numpy, batch_size=s.batch_size, nb_epochs=1)
        backend = dist.get_backend()
        dist.destroy_process_group()
        print("TORCHRUN_OK " + json.dumps({"backend": backend, "world_size": int(total.item()),
                                           "loss": history[-1]["loss"]}), flush=True)  # fmt: skip
        return
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    mode = args.child.removeprefix("resume-")
    directory = Path(args.child_dir)
    checkpoint_dir = directory / ("uninterrupted" if mode == "uninterrupted" else "interrupted")
    trainer = AdversarialTrainerFast(classifier_for(initial, s), EPS, checkpoint_dir=checkpoint_dir,
                                     resume=mode == "resumed", **options)  # fmt: skip
    if mode == "killed":
        save = checkpoints.save

        def save_then_die(trainer: Any, epoch: int) -> None:
            save(trainer, epoch)
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        checkpoints.save = save_then_die
    trainer.fit(x_numpy, y_numpy, batch_size=s.batch_size, nb_epochs=3)
    torch.save({k: v.cpu() for k, v in trainer.network.state_dict().items()}, directory / f"{mode}.pt")


# ----------------------------------------------------------------------------------------------- report


def cell(value: Any, form: str = "{:.2f}") -> str:
    return "" if value is None else form.format(value)


def training_table(rows: list[dict]) -> str:
    lines = ["| method | compile | images/s | s / epoch (50k) | vs natural | vs hand-written | peak GiB | warm-up s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['method']} | {row['compile']} | {row['error']} | | | | | |")
            continue
        lines.append(f"| {row['method']} | {row['compile']} | {row['images_per_second']:.0f} | "
                     f"{row['epoch_seconds']:.1f} | {cell(row.get('vs_natural'), '{:.2f}x')} | "
                     f"{cell(row.get('vs_hand_written'), '{:.2f}x')} | {cell(row['peak_gib'])} | "
                     f"{row['warmup_seconds']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def p2_fast_line(rows: list[dict], batch_size: int) -> str:
    fast = [r for r in rows if r["method"].startswith("Fast") and "error" not in r]
    if not fast:
        return "P2's Fast run: not measured."
    best = min(fast, key=lambda r: r["epoch_seconds"])
    return (
        f"P2's Fast run (15 epochs of 50,000 images), extrapolated from the fastest Fast row (compile="
        f"{best['compile']}, batch {batch_size}; P2 itself uses batch 128): "
        f"**{15 * best['epoch_seconds'] / 60:.1f} min**."
    )


class Report:
    """The markdown report, rewritten after every section."""

    def __init__(self, path: Path, header: str) -> None:
        self.path, self.sections = path, [header]
        self.data: dict[str, Any] = {}

    def add(self, key: str, value: Any, text: str) -> None:
        self.data[key] = value
        self.sections.append(text)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n\n".join(self.sections) + "\n")
        self.path.with_suffix(".json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")


def header(s: Settings, command: str) -> str:
    device = torch.cuda.get_device_name(s.device) if s.device.type == "cuda" else platform.processor() or "CPU"
    sizes = (f"{s.n} synthetic CIFAR-shaped images held on the device (seed 0), "
             f"{'a small BatchNorm CNN (--tiny)' if s.tiny else 'PreActResNet18'}, batch {s.batch_size}, "
             f"bf16 autocast, channels-last, SGD; eps 8/255")  # fmt: skip
    return (
        f"# GPU benchmark\n\n`{command}` on {device} (torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}).\n\n{sizes}. Training figures time {s.timed_batches} minibatches after "
        f"{s.warmup_batches} warm-up minibatches on the same trainer (the warm-up includes torch.compile's "
        "compilation); an epoch is 50,000 images (Free-8: one pass over them with 8 replays; DAT+GAAT: the "
        "mean of a natural and an adversarial epoch). Ratios are per epoch."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the same code paths on CPU in seconds")
    parser.add_argument("--device", help="cuda (default) or cpu")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "results", help="folder of gpu.md")
    parser.add_argument("--budget", type=float, help="seconds after which no compiled run starts (420; --tiny: none)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    started = time.perf_counter()
    s = settings(args.tiny, args.device)
    torch.manual_seed(0)
    initial = network(s.tiny)
    x, y = synthetic_data(s)
    command = "python " + " ".join(["benchmarks/gpu.py", *sys.argv[1:]])
    report = Report(args.out / "gpu.md", header(s, command))
    print("training, eager", flush=True)
    eager = training_rows(initial, x, y, s, False, None)
    text = "## Training, eager\n\n" + training_table(eager) + "\n\n" + p2_fast_line(eager, s.batch_size)
    report.add("training_eager", eager, text)
    print("attacks alone", flush=True)
    attacks = attack_rows(initial, x, y, s)
    lines = ["| attack | images/s | inside the eps-ball |", "|---|---:|---|"]
    lines += [f"| {r['attack']} | {r['images_per_second']:.0f} | {r['in_ball']} |" for r in attacks]
    report.add("attacks", attacks, f"## Attacks alone (batch {s.batch_size}, eval mode, bf16)\n\n" + "\n".join(lines))
    print("evaluation", flush=True)
    evaluation = evaluation_row(initial, x, y, s)
    report.add("evaluation", evaluation, (
        f"## art_fastat.evaluate on the device ({evaluation['images']} images, untrained network)\n\n"
        f"ART PGD-50-10: {evaluation['pgd_seconds']:.1f} s; AutoAttack standard: "
        f"{evaluation['autoattack_seconds']:.1f} s (clean {evaluation['clean_accuracy']:.3f}, PGD "
        f"{evaluation['pgd_accuracy']:.3f}, AutoAttack {evaluation['autoattack_accuracy']:.3f})."))  # fmt: skip
    print("torchrun smoke test", flush=True)
    smoke = torchrun_smoke(s)
    report.add("torchrun", smoke, f"## One-process torchrun\n\n`{json.dumps(smoke)}`")
    print("kill and resume", flush=True)
    resume = kill_and_resume(s)
    report.add("kill_resume", resume, "## Kill and resume under deterministic algorithms (Fast, 3 epochs)\n\n"
               f"`{json.dumps(resume)}`")  # fmt: skip
    if not args.no_compile:
        print("training, torch.compile", flush=True)
        budget = args.budget if args.budget is not None else None if s.tiny else 420.0
        compiled = training_rows(initial, x, y, s, True, None if budget is None else started + budget)
        report.add("training_compiled", compiled, "## Training, torch.compile\n\n" + training_table(compiled) +
                   "\n\n" + p2_fast_line(eager + compiled, s.batch_size))  # fmt: skip
    print(f"done in {time.perf_counter() - started:.0f} s: {report.path}", flush=True)


if __name__ == "__main__":
    main()
