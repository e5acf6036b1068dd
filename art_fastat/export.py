"""
Sharing a trained model: :func:`export_run` turns a run directory of ``art-fastat train`` or ``bench`` (see
:mod:`art_fastat.runs`) into a folder that can be published on the Hugging Face Hub as it is, and :func:`load_model` /
:func:`load_classifier` read such a folder back. The folder holds no pickle: weights in safetensors, everything else
in JSON and Markdown.

- ``model.safetensors``: the network's ``state_dict`` (tensors only); its metadata names the architecture, the input
  shape, the number of classes, ``clip_values`` and ``preprocessing``, so the file describes itself;
- ``config.json``: what :func:`load_model` needs (the same fields) and how the model was trained (method, protocol,
  eps, seed, options, epochs, training seconds);
- ``model_info.json``: a RobustBench model-info entry (``link``, ``name``, ``authors``, ``additional_data``,
  ``number_forward_passes``, ``dataset``, ``venue``, ``architecture``, ``eps``, ``clean_acc``, ``reported``,
  ``autoattack_acc``, ``footnote``), accuracies as RobustBench writes them: percent with two decimals, as strings;
- ``README.md``: the model card, with the Hub's YAML metadata (license, tags, library, model-index with the
  accuracies);
- ``history.json`` and, when the run was evaluated, ``report.json``: copies of the run's per-epoch history and
  evaluation report.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from art_fastat.models import MODELS, get_model

logger = logging.getLogger(__name__)

FORMAT = "art_fastat.export/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MODEL_INFO_FILE = "model_info.json"
#: What a run directory must hold to be exported (``report.json`` is optional).
RUN_FILES = ("model.pt", "config.json", "history.json")

#: The paper of each method: (title, authors, link, venue), as RobustBench's ``name``, ``authors``, ``link``, ``venue``.
PAPERS: dict[str, tuple[str, str, str, str]] = {
    "natural": ("Standardly trained model", "", "", "N/A"),
    "pgd": ("Towards Deep Learning Models Resistant to Adversarial Attacks",
            "Aleksander Madry, Aleksandar Makelov, Ludwig Schmidt, Dimitris Tsipras, Adrian Vladu",
            "https://arxiv.org/abs/1706.06083", "ICLR 2018"),
    "fast": ("Fast is better than free: Revisiting adversarial training", "Eric Wong, Leslie Rice, J. Zico Kolter",
             "https://arxiv.org/abs/2001.03994", "ICLR 2020"),
    "gaat": ("Reducing Adversarial Training Cost with Gradient Approximation", "Huihui Gong",
             "https://arxiv.org/abs/2309.09464", "arXiv, Sep 2023"),
    "dat": ("Improving the affordability of robustness training for DNNs",
            "Sidharth Gupta, Parijat Dube, Ashish Verma", "https://arxiv.org/abs/2002.04237", "arXiv, Feb 2020"),
    "dat+gaat": ("Reducing Adversarial Training Cost with Gradient Approximation", "Huihui Gong",
                 "https://arxiv.org/abs/2309.09464", "arXiv, Sep 2023"),
    "free": ("Adversarial Training for Free!",
             "Ali Shafahi, Mahyar Najibi, Amin Ghiasi, Zheng Xu, John Dickerson, Christoph Studer, Larry S. Davis, "
             "Gavin Taylor, Tom Goldstein", "https://arxiv.org/abs/1904.12843", "NeurIPS 2019"),
    "atcd": ("Adversarial Training using Contrastive Divergence", "",
             "https://openreview.net/group?id=ICLR.cc/2021/Conference", "ICLR 2021 submission"),
    "atlas": ("Improving Local Effectiveness for Global Robust Training", "Jingyue Lu, M. Pawan Kumar",
              "https://arxiv.org/abs/2110.14030", "arXiv, Oct 2021"),
    "l2l": ("Improved Adversarial Training via Learned Optimizer", "Yuanhao Xiong, Cho-Jui Hsieh",
            "https://arxiv.org/abs/2004.12227", "ECCV 2020"),
    "l2l-trades": ("Improved Adversarial Training via Learned Optimizer", "Yuanhao Xiong, Cho-Jui Hsieh",
                   "https://arxiv.org/abs/2004.12227", "ECCV 2020"),
    "art-madry": ("Towards Deep Learning Models Resistant to Adversarial Attacks",
                  "Aleksander Madry, Aleksandar Makelov, Ludwig Schmidt, Dimitris Tsipras, Adrian Vladu",
                  "https://arxiv.org/abs/1706.06083", "ICLR 2018"),
    "art-fbf": ("Fast is better than free: Revisiting adversarial training", "Eric Wong, Leslie Rice, J. Zico Kolter",
                "https://arxiv.org/abs/2001.03994", "ICLR 2020"),
}  # fmt: skip

#: RobustBench's names of the architectures of :data:`art_fastat.models.MODELS`.
ARCHITECTURES: dict[str, str] = {
    "digits_cnn": "DigitsCNN", "mnist_cnn": "MnistCNN", "small_cnn": "SmallCNN",
    "preact_resnet18": "PreActResNet-18", "wide_resnet": "WideResNet", "vgg16": "VGG-16",
}  # fmt: skip

#: Per protocol: RobustBench's dataset name, the Hub dataset id (None: not on the Hub) and the test images it uses.
DATASETS: dict[str, tuple[str, str | None, str]] = {
    "digits": ("digits", None, "the P0 test split (sklearn digits shuffled with RandomState(0), images 1500-1796)"),
    "mnist10k": ("mnist", "mnist", "the P1 test split (MNIST test images 8000-9999; P1 trains on images 0-7999)"),
    "cifar10": ("cifar10", "cifar10", "the CIFAR-10 test set"),
}


def robustbench_eps(eps: float) -> str:
    """
    eps as RobustBench writes it: ``"8/255"`` when it is a whole number of 8-bit grey levels that no short decimal
    writes, else the decimal (``"0.3"``).

    :param eps: L-inf radius in the units of ``clip_values`` (0, 1).
    :return: The string.
    """
    levels = eps * 255
    if round(eps, 4) != eps and abs(levels - round(levels)) < 1e-6:
        return f"{round(levels)}/255"
    return f"{eps:g}"


def robustbench_accuracy(fraction: float | None) -> str | None:
    """:return: A fraction in [0, 1] as RobustBench writes accuracies (``0.4321`` -> ``"43.21"``); None stays None."""
    return None if fraction is None else f"{100.0 * float(fraction):.2f}"


def export_run(
    run_dir: str | os.PathLike, out: str | os.PathLike, *, force: bool = False, license: str = "mit"
) -> Path:
    """
    Write the shareable folder of a run directory (see the module's description for its files).

    Decisions: a run without ``report.json`` (trained, not evaluated) is exported with null accuracies and a warning,
    as the model itself is complete; ``out`` must not exist or be an empty directory unless ``force=True``, which
    replaces it; the folder is written beside ``out`` and renamed into place, so ``out`` is either the previous
    folder or the complete new one, never a partial one.

    :param run_dir: A directory written by ``art-fastat train`` or ``bench`` (:func:`art_fastat.runs.run_method`):
                    ``model.pt``, ``config.json``, ``history.json`` and optionally ``report.json``.
    :param out: The folder to write.
    :param force: Replace an existing non-empty ``out``.
    :param license: The license of the weights in the model card's metadata (a Hub license id).
    :return: ``out``.
    :raises FileNotFoundError: ``run_dir`` or one of its files is missing.
    :raises FileExistsError: ``out`` is not empty and ``force`` is False.
    :raises ValueError: ``run_dir``'s files do not describe a model of a known protocol, or ``out`` is a file, the run
                        directory or one of its parents.
    """
    run_dir, out = Path(run_dir), Path(out)
    if not isinstance(license, str) or not license.strip() or any(c.isspace() for c in license):
        raise ValueError(f"license must be a Hub license id such as 'mit' or 'apache-2.0', got {license!r}")
    run = _read_run(run_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file, not a directory")
    resolved_out, resolved_run = out.resolve(), run_dir.resolve()
    if resolved_out == resolved_run or resolved_out in resolved_run.parents:
        raise ValueError(f"out {out} must not be the run directory {run_dir} or hold it")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"out {out} exists and is not empty: choose another folder or pass force=True "
                              "(CLI: --force) to replace it")  # fmt: skip
    files = _folder_files(run, license)
    _write_folder(out, files, run["state"], run["metadata"])
    logger.info("Exported %s to %s", run_dir, out)
    return out


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """
    The network of a folder written by :func:`export_run` (or downloaded from the Hub), in eval mode. Only
    ``config.json`` and ``model.safetensors`` are read, neither with pickle: loading cannot run code.

    :param directory: The folder.
    :param device: Where the weights go.
    :return: The ``torch.nn.Module`` (input-space images inside ``clip_values``, no normalisation unless
             ``config.json``'s ``preprocessing`` says so; logits out).
    :raises FileNotFoundError: A file is missing.
    :raises ValueError: The folder is not an art_fastat export, its files disagree, or the weights do not fit the
                        architecture.
    """
    config, state = _read_folder(Path(directory))
    model = _build(config["architecture"], config["model_kwargs"])
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        path = Path(directory) / WEIGHTS_FILE
        raise ValueError(f"{path} holds no weights of {config['architecture']}: {error}") from error
    return model.to(device).eval()


def load_classifier(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """
    The network of an exported folder as an ART ``PyTorchClassifier`` with its ``input_shape``, ``nb_classes``,
    ``clip_values`` and ``preprocessing``, ready for ART's attacks and :func:`art_fastat.evaluate`. It has no
    optimizer: to train it further, build a ``PyTorchClassifier`` around :func:`load_model`'s network with one.

    :param directory: The folder.
    :param device: ``"cpu"`` or a CUDA device.
    :return: The classifier.
    """
    from art.estimators.classification import PyTorchClassifier

    config = _read_config(Path(directory))
    model = load_model(directory, device)
    preprocessing = config["preprocessing"]
    return PyTorchClassifier(
        model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(config["input_shape"]),
        nb_classes=config["nb_classes"],
        clip_values=tuple(config["clip_values"]),
        preprocessing=None if preprocessing is None else (preprocessing["mean"], preprocessing["std"]),
        device_type="gpu" if torch.device(device).type == "cuda" else "cpu",
    )


# ---------------------------------------------------------------------------------------------------- reading a run


def _read_run(run_dir: Path) -> dict[str, Any]:
    """Everything the folder is made of, checked: refused before anything is written."""
    from art_fastat.engine.checkpoints import read_model_state
    from art_fastat.protocols import get_protocol

    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist or is not a directory")
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        hint = " (a run interrupted before its end leaves only checkpoint/: resume it with --resume)"
        raise FileNotFoundError(f"run directory {run_dir} lacks {', '.join(missing)}: it is not a finished run of "
                                f"art-fastat train or bench{hint if 'model.pt' in missing else ''}")  # fmt: skip
    config = _read_json(run_dir / "config.json")
    history = _read_json(run_dir / "history.json")
    report = _read_json(run_dir / "report.json") if (run_dir / "report.json").is_file() else None
    if not isinstance(config, dict) or not all(key in config for key in ("method", "protocol", "eps")):
        raise ValueError(f"{run_dir / 'config.json'} is not the config.json of a run (method, protocol, eps)")
    if not isinstance(history, list):
        raise ValueError(f"{run_dir / 'history.json'} is not a per-epoch history (a list of records)")
    if report is not None and not (isinstance(report, dict) and {"n", "clean_accuracy", "robust_accuracy",
                                                                 "worst_case_accuracy"} <= report.keys()):  # fmt: skip
        raise ValueError(f"{run_dir / 'report.json'} is not an evaluation report of art_fastat.evaluate")
    if report is None:
        logger.warning("%s has no report.json (the run was not evaluated): the model card's accuracies are null; "
                       "art-fastat evaluate --checkpoint %s --protocol %s --out %s writes one", run_dir,
                       run_dir / "model.pt", config["protocol"], run_dir)  # fmt: skip
    protocol = get_protocol(config["protocol"])
    eps = config["eps"]
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps <= 1:
        raise ValueError(f"{run_dir / 'config.json'}: eps must be a number in (0, 1], got {eps!r}")
    try:
        state = read_model_state(run_dir / "model.pt")
        network = _build(protocol.model, {})
        network.load_state_dict(state)
    except Exception as error:
        raise ValueError(f"{run_dir / 'model.pt'} holds no weights of the {protocol.model} model of protocol "
                         f"{protocol.name}: {error}") from error  # fmt: skip
    with torch.no_grad():
        nb_classes = int(network.eval()(torch.zeros(1, *protocol.input_shape)).shape[1])
    metadata = {
        "architecture": protocol.model,
        "model_kwargs": {"num_classes": nb_classes},
        "input_shape": list(protocol.input_shape),
        "nb_classes": nb_classes,
        "clip_values": [0.0, 1.0],  # every protocol's classifier (Protocol.make_classifier)
        "preprocessing": None,
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in network.state_dict().items()}
    return {"config": config, "history": history, "report": report, "protocol": protocol, "metadata": metadata,
            "state": state}  # fmt: skip


def _build(architecture: str, model_kwargs: dict[str, Any]) -> torch.nn.Module:
    """The architecture, initialised without touching the caller's global random state (its weights are replaced)."""
    with torch.random.fork_rng(devices=[]):
        return get_model(architecture, **model_kwargs)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


# ---------------------------------------------------------------------------------------------------- the folder


def _folder_files(run: dict[str, Any], license: str) -> dict[str, str]:
    """The folder's text files, by name."""
    config, history, report, metadata = run["config"], run["history"], run["report"], run["metadata"]
    epochs = int(history[-1]["epoch"]) if history and "epoch" in history[-1] else len(history)
    exported = {
        "format": FORMAT,
        **metadata,
        "threat_model": "Linf",
        "eps": float(config["eps"]),
        "method": config["method"],
        "protocol": config["protocol"],
        "seed": config.get("seed"),
        "options": config.get("options", {}),
        "epochs": epochs,
        "training_seconds": config.get("training_seconds"),
        "passes_per_batch": config.get("passes_per_batch"),
    }
    info = model_info(config["method"], run["protocol"].name, metadata["architecture"], float(config["eps"]), report,
                      epochs, config.get("seed"))  # fmt: skip
    files = {
        CONFIG_FILE: json.dumps(exported, indent=2, default=str),
        MODEL_INFO_FILE: json.dumps(info, indent=2),
        "README.md": model_card(exported, info, report, license),
        "history.json": json.dumps(history, indent=2),
    }
    if report is not None:
        files["report.json"] = json.dumps(report, indent=2)
    return files


def model_info(
    method: str,
    protocol: str,
    architecture: str,
    eps: float,
    report: dict[str, Any] | None,
    epochs: int,
    seed: int | None = None,
) -> dict[str, Any]:
    """
    The RobustBench model-info entry of a run. ``reported`` is the run's own claim, the worst-case accuracy over the
    attacks it ran (RobustBench's ``reported`` is the paper's number); ``autoattack_acc`` is None when AutoAttack was
    not run, and every accuracy is None when the run was not evaluated.

    :param method: The method's name (a key of :data:`PAPERS`; another name gets an entry without a paper).
    :param protocol: The protocol's name.
    :param architecture: A key of :data:`art_fastat.models.MODELS`.
    :param eps: L-inf radius.
    :param report: The evaluation report (``report.json``), or None.
    :param epochs: Epochs trained.
    :param seed: The run's seed.
    :return: The entry, keys in RobustBench's order.
    """
    from art_fastat.bench import LABELS
    from art_fastat.evaluation.report import claimed_accuracy

    title, authors, link, venue = PAPERS.get(method, (method, "", "", "N/A"))
    dataset, _, test_images = DATASETS.get(protocol, (protocol, None, f"protocol {protocol}'s test split"))
    robust = {} if report is None else report["robust_accuracy"]
    trained = f"Trained with art_fastat's {LABELS.get(method, method)} under protocol {protocol} ({epochs} epoch"
    trained += "" if epochs == 1 else "s"
    trained += "" if seed is None else f", seed {seed}"
    if report is None:
        evaluated = "not evaluated (no report.json in the run)"
    else:
        evaluated = (f"evaluated on the first {report['n']} images of {test_images}, attacks: "
                     f"{_attacks_described(report)}; reported: {_reported_described(report)}")  # fmt: skip
    return {
        "link": link,
        "name": title,
        "authors": authors,
        "additional_data": False,
        "number_forward_passes": 1,
        "dataset": dataset,
        "venue": venue,
        "architecture": ARCHITECTURES.get(architecture, architecture),
        "eps": robustbench_eps(eps),
        "clean_acc": robustbench_accuracy(None if report is None else report["clean_accuracy"]),
        "reported": robustbench_accuracy(None if report is None else claimed_accuracy(report)),
        "autoattack_acc": robustbench_accuracy(robust.get("autoattack")),
        "footnote": f"{trained}); {evaluated}.",
    }


def _images(report: dict[str, Any], attack: str) -> int:
    return int(report.get("sizes", {}).get(attack, report["n"]))


def _reported_described(report: dict[str, Any]) -> str:
    from art_fastat.evaluation.report import claimed_accuracy

    worst = f"the worst case over these attacks on the first {_images(report, 'worst_case')} images (every attack saw)"
    if claimed_accuracy(report) < report["worst_case_accuracy"]:
        return f"the lowest of {worst} and each attack's accuracy on its own images"
    return worst


def _attacks_described(report: dict[str, Any]) -> str:
    """The attacks of a report with their settings and, where fewer than the clean images, their images, e.g.
    ``ART PGD-50 (step 0.01, 10 random starts)`` or ``AutoAttack (standard) on the first 500``."""
    settings = report.get("settings", {})
    described = []
    for attack in report["robust_accuracy"]:
        options = settings.get(attack, {})
        if attack == "pgd" and {"max_iter", "eps_step", "num_random_init"} <= options.keys():
            starts = options["num_random_init"]
            described.append(f"ART PGD-{options['max_iter']} (step {options['eps_step']:g}, {starts} random "
                             f"start{'' if starts == 1 else 's'})")  # fmt: skip
        elif attack == "cw":
            described.append("ART Carlini-Wagner L-inf")
        elif attack == "autoattack":
            described.append(f"AutoAttack ({options['version']})" if "version" in options else "AutoAttack")
        else:
            described.append(attack)
        if _images(report, attack) < report["n"]:
            described[-1] += f" on the first {_images(report, attack)}"
    return ", ".join(described) or "no attack"


def model_card(config: dict[str, Any], info: dict[str, Any], report: dict[str, Any] | None, license: str) -> str:
    """
    The folder's ``README.md``: the Hub's YAML metadata, then what the model is, its robustness, how to load it and
    how it was trained.

    :param config: The folder's ``config.json``.
    :param info: Its ``model_info.json``.
    :param report: The run's evaluation report, or None.
    :param license: A Hub license id.
    :return: The Markdown text.
    """
    from art_fastat.bench import LABELS

    label = LABELS.get(config["method"], config["method"])
    _, hub_dataset, test_images = DATASETS.get(config["protocol"], (config["protocol"], None, ""))
    title = f"{label} adversarial training, {info['architecture']} on {info['dataset']} (art_fastat)"
    rows = [] if report is None else _accuracy_rows(report, info["eps"])
    front = [
        "---",
        f"license: {license}",
        "library_name: pytorch",
        "pipeline_tag: image-classification",
        "tags:",
        *(f"- {tag}" for tag in ("adversarial-robustness", "adversarial-training", "art_fastat", "robustbench",
                                 "safetensors", f"method-{config['method']}")),
        *(["datasets:", f"- {hub_dataset}"] if hub_dataset else []),
        "metrics:",
        "- accuracy",
    ]  # fmt: skip
    if rows:
        front += [
            "model-index:",
            f"- name: {json.dumps(title)}",
            "  results:",
            "  - task:",
            "      type: image-classification",
            "      name: Image Classification",
            "    dataset:",
            f"      name: {json.dumps(info['dataset'])}",
            f"      type: {json.dumps(hub_dataset or info['dataset'])}",
            "      split: test",
            "    metrics:",
        ]
        for name, value in rows:
            front += ["    - type: accuracy", f"      value: {value}", f"      name: {json.dumps(name)}"]
    front.append("---")
    reference = f"[{info['name']}]({info['link']})" if info["link"] else info["name"]
    reference += f", {info['venue']}" if info["venue"] != "N/A" else ""
    lines = [
        *front,
        "",
        f"# {title}",
        "",
        f"A {info['architecture']} trained with {label} ({reference}) at L-inf eps = {info['eps']} with "
        "art_fastat (fast adversarial training for IBM's Adversarial Robustness Toolbox).",
        "",
        "## Robustness",
        "",
    ]
    if rows:
        lines += [f"Accuracy in percent on the first {report['n']} images of {test_images}, L-inf eps = "
                  f"{info['eps']}; attacks: {_attacks_described(report)}.", "", "| | accuracy |",
                  "|---|---:|"]  # fmt: skip
        lines += [f"| {name} | {value:.2f} |" for name, value in rows]
        lines += ["", *(f"**Warning:** {flag}" for flag in report.get("flags", []))]
    else:
        lines += ["Not evaluated: the run had no evaluation report.", ""]
    lines += [
        f"RobustBench entry (`{MODEL_INFO_FILE}`): {info['footnote']}",
        "",
        "## Usage",
        "",
        "```python",
        "import art_fastat",
        "",
        'model = art_fastat.load_model("PATH")  # torch.nn.Module in eval mode; reads no pickle',
        'classifier = art_fastat.load_classifier("PATH")  # ART PyTorchClassifier for ART attacks',
        "```",
        "",
        f"`PATH` is this folder (e.g. `huggingface_hub.snapshot_download(REPO_ID)`). Inputs: float32 images of shape "
        f"`(N, {', '.join(map(str, config['input_shape']))})` in [{config['clip_values'][0]:g}, "
        f"{config['clip_values'][1]:g}], "
        + ("not normalised" if config["preprocessing"] is None else "standardised inside the classifier")
        + f"; outputs: {config['nb_classes']} logits.",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| method | `{config['method']}` ({label}) |",
        f"| protocol | `{config['protocol']}` |",
        f"| architecture | `{config['architecture']}` |",
        f"| eps | {info['eps']} (L-inf) |",
        f"| epochs | {config['epochs']} |",
        f"| seed | {config['seed']} |",
        f"| options | `{json.dumps(config['options'], default=str)}` |",
    ]
    if isinstance(config.get("training_seconds"), int | float):
        lines.append(f"| training seconds | {config['training_seconds']:.1f} |")
    lines += [
        "",
        f"Files: `{WEIGHTS_FILE}` (weights), `{CONFIG_FILE}` (architecture and training), `{MODEL_INFO_FILE}` "
        "(RobustBench model info), `history.json` (per-epoch history)"
        + (", `report.json` (evaluation report)." if report is not None else "."),
        "",
    ]
    return "\n".join(lines)


def _accuracy_rows(report: dict[str, Any], eps: str) -> list[tuple[str, float]]:
    """(name, percent) of the clean, every attack's and the worst-case accuracy."""
    names = {"autoattack": "AutoAttack", "pgd": "PGD", "cw": "CW"}

    def label(name: str, attack: str) -> str:
        images = _images(report, attack)
        return name if images == report["n"] else f"{name}, first {images} images"

    rows = [(label("clean", "clean"), round(100.0 * report["clean_accuracy"], 2))]
    rows += [(label(f"{names.get(attack, attack)} (L-inf, eps = {eps})", attack), round(100.0 * value, 2))
             for attack, value in report["robust_accuracy"].items()]  # fmt: skip
    worst = f"worst case over the attacks, first {_images(report, 'worst_case')} images"
    rows.append((worst, round(100.0 * report["worst_case_accuracy"], 2)))
    return rows


def _write_folder(out: Path, files: dict[str, str], state: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write the folder beside ``out`` and rename it into place (replacing ``out`` last)."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.export-{os.getpid()}"
    previous = out.parent / f".{out.name}.replaced-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        for name, text in files.items():
            (staging / name).write_text(text)
        save_file(state, str(staging / WEIGHTS_FILE), metadata=_safetensors_metadata(metadata))
        shutil.copymode(staging / CONFIG_FILE, staging / WEIGHTS_FILE)  # safetensors writes it owner-only
        if out.exists():
            os.replace(out, previous)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if previous.exists() and not out.exists():
            os.replace(previous, out)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _safetensors_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """safetensors metadata are strings: JSON for every value but the Hub's ``format``."""
    return {"format": "pt", "art_fastat": FORMAT, **{key: json.dumps(value) for key, value in metadata.items()}}


# ---------------------------------------------------------------------------------------------------- reading back


def _read_config(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise FileNotFoundError(f"directory {directory} does not exist or is not a directory")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory} has no {name}: it is not a folder written by art-fastat export")
    config = _read_json(directory / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise ValueError(f"{directory / CONFIG_FILE} is not an art_fastat export of format {FORMAT!r} "
                         f"(format: {found!r})")  # fmt: skip
    if config.get("architecture") not in MODELS:
        raise ValueError(f"{directory / CONFIG_FILE}: architecture must be one of {sorted(MODELS)}, got "
                         f"{config.get('architecture')!r}")  # fmt: skip
    preprocessing = config.get("preprocessing")
    expected = {
        "model_kwargs": isinstance(config.get("model_kwargs"), dict),
        "input_shape": isinstance(config.get("input_shape"), list) and all(
            isinstance(size, int) and size > 0 for size in config["input_shape"]),
        "nb_classes": isinstance(config.get("nb_classes"), int) and config["nb_classes"] >= 2,
        "clip_values": isinstance(config.get("clip_values"), list) and len(config["clip_values"]) == 2,
        "preprocessing": preprocessing is None
        or (isinstance(preprocessing, dict) and {"mean", "std"} <= preprocessing.keys()),
    }  # fmt: skip
    wrong = [name for name, valid in expected.items() if not valid]
    if wrong:
        raise ValueError(f"{directory / CONFIG_FILE}: invalid {', '.join(wrong)} (model_kwargs: an object, "
                         "input_shape: positive integers, nb_classes: an integer >= 2, clip_values: [low, high], "
                         "preprocessing: null or {mean, std})")  # fmt: skip
    return config


def _read_folder(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """config.json and the weights, after checking that the two files describe one model."""
    from safetensors import SafetensorError, safe_open

    config = _read_config(directory)
    path = directory / WEIGHTS_FILE
    try:
        with safe_open(str(path), framework="pt", device="cpu") as weights:
            metadata = weights.metadata() or {}
            state = {name: weights.get_tensor(name) for name in weights.keys()}  # noqa: SIM118 (no __iter__)
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
    if metadata.get("art_fastat") != FORMAT:
        raise ValueError(f"{path} was not written by art-fastat export (its metadata lack art_fastat={FORMAT!r})")
    disagreeing = [key for key, value in metadata.items()
                   if key in config and key != "format" and _decoded(value) != config[key]]  # fmt: skip
    if disagreeing:
        raise ValueError(f"{path} and {directory / CONFIG_FILE} disagree on {', '.join(sorted(disagreeing))}")
    return config, state


def _decoded(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
