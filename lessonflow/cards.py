"""A model card per lesson (``reports/cards/<lesson>.md``): what a person reusing the model needs in one page.

The fields follow the model hubs' cards and the reproducibility checklists: what the model is and which
tutorial chapter it rebuilds, its architecture and size, its data, the hyper-parameters it was trained with,
its result per seed against the tutorial's, the hardware and software that trained it (from its train log,
so the card states what trained it, not what rendered it), how to load it, and the limits its own metrics show.
"""

from __future__ import annotations

from typing import Any

import yaml

from lessonflow.catalogue import chapters, describe
from lessonflow.compare import STAND_IN_DATA
from lessonflow.registry import TORCH_MODEL_KINDS
from lessonflow.seeds import BESIDE
from lessonflow.seeds import KEY as SEEDS_KEY
from lessonflow.seeds import described

NOT_RECORDED = "not recorded (trained before lessonflow logged it)"
FROM_TRAINING = ("Architecture", "Parameters", "Model file", "Training data", "Hyper-parameters as trained",
                 "Training time", "Hardware", "Software")
SOFTWARE = (("Python", "python"), ("torch", "torch"), ("NumPy", "numpy"), ("CUDA", "cuda"))
# The params keys that describe the tutorial rather than how this model was trained.
NOT_HYPERPARAMETERS = ("reference", "reference_accuracy", "beyond_tutorial", "fast", "embedded")
FIELDS = ("What it is", "Tutorial", "Architecture", "Parameters", "Model file", "Training data",
          "Hyper-parameters as trained", "Result per seed", "Reference and verdict", "Training time", "Hardware",
          "Software", "How to load it", "Known limits")


def over_seeds(block: dict[str, Any] | None, seed: int, value: float, shown=lambda v: f"{v:.4g}") -> str:
    """Each seed's value, then mean ± standard deviation over the seeds (``seeds.spread``); one seed says it has no spread."""
    if not block:
        return f"seed {seed}: {shown(value)} (one seed: no spread measured)"
    return each_seed(block, shown)


def each_seed(block: dict[str, Any], shown=lambda v: f"{v:.4g}") -> str:
    each = ", ".join(f"seed {name}: {shown(number)}" for name, number in block["per_seed"].items())
    return f"{each}; {described(block, shown)}"


def as_trained(lesson: Any, data_source: str | None) -> dict[str, Any]:
    """The lesson's params with the recipe and sample-data settings it trained with in place."""
    trained = lesson.for_source(data_source) if data_source else lesson
    return trained.model_dump(exclude=set(NOT_HYPERPARAMETERS), exclude_none=True)


def known_limits(metrics: dict[str, Any], trained: dict[str, Any], verdict: str, seeds: int) -> list[str]:
    """What the lesson's own metrics say it cannot do, in sentences."""
    lost = [key.removeprefix("beats_").replace("_", " ") for key, value in sorted(metrics.items())
            if key.startswith("beats_") and value is False]  # a baseline the lesson's evaluation measured
    said = metrics.get("verdict")  # the evaluation's own sentence about that baseline, when it wrote one
    limits = list(dict.fromkeys(said if isinstance(said, str) else f"does not beat {what}" for what in lost))
    if isinstance(metrics.get("known_limit"), str):  # a limit the evaluation itself states (random features)
        limits.append(metrics["known_limit"])
    if "falls short" in verdict:
        limits.append(f"falls short of the tutorial's result ({verdict})")
    source = trained.get("data_source")
    if source in STAND_IN_DATA:
        limits.append(f"trained and tested on {STAND_IN_DATA[source]} ({source}), not the tutorial's dataset: "
                      "its numbers are not the tutorial's")
    if trained.get("train_split") == "train+val":
        limits.append("trained on the validation split too: no held-out validation score, and no ensemble may use it")
    if seeds == 1:
        limits.append("one seed: how much the result moves with the seed is not measured")
    return limits or ["none that its metrics show"]


def loading(lesson_id: str, lesson: Any) -> str:
    if lesson.kind not in TORCH_MODEL_KINDS:
        return (f"not a torch module: `torch.load(\"models/{lesson_id}/model.pt\", weights_only=True)` gives the "
                "values it fitted, as a dict of tensors")
    scale = getattr(lesson, "normalize", None)
    inputs = (f"; it takes its inputs as training gave them: `lessonflow.training.to_inputs(x, "
              f"{tuple(scale) if scale else None})` (uint8 pixels to [0, 1], then the lesson's normalisation)")
    if lesson.kind == "seq2seq":
        inputs = (f"; `model(words)` translates one sentence given as indices into the `source` list of "
                  f"`torch.load(\"models/{lesson_id}/vocabulary.pt\")` and answers indices into its `target` list")
    return (f"`import lessonflow; model = lessonflow.load(\"{lesson_id}\")` (this workspace; `rev=\"<commit>\"` for "
            f"a commit, through the DVC remote), or the weights alone: `dvc artifacts get <repo> {lesson_id} --rev "
            f"v1.0.0` once a commit is tagged `{lesson_id}@v1.0.0`{inputs}")


def architecture(lesson: Any, trained: dict[str, Any], module: Any) -> str:
    spec = getattr(lesson, "model", None)
    named = f"`{spec.name}` {spec.kwargs()}" if hasattr(spec, "name") else f"`{spec or lesson.kind}`"
    shapes = trained.get("model", {})
    built = f", built for inputs {shapes['input_shape']} → {shapes['outputs']} outputs" if "input_shape" in shapes else ""
    return named + built + (f"\n\n```\n{module}\n```" if module is not None else "")


def _size(count: Any, unit: str = "") -> str:
    return f"{count:,}{unit}" if isinstance(count, int) else NOT_RECORDED


def software(env: dict[str, Any]) -> str:
    found = [f"{name} {env[key]}" for name, key in SOFTWARE if env.get(key)]
    return ", ".join(found) or NOT_RECORDED


def training_fields(lesson_id: str, lesson: Any, trained: dict[str, Any], module: Any) -> dict[str, str]:
    """The fields read from the train log; a lesson not trained yet names the stage to run in each."""
    if not trained:
        return dict.fromkeys(FROM_TRAINING, f"not trained yet: run `dvc repro train@{lesson_id}`")
    env, saved, source = trained.get("environment", {}), trained.get("model", {}), trained.get("data_source")
    samples = f"; {trained['train_samples']:,} training samples" if "train_samples" in trained else ""
    return {
        "Architecture": architecture(lesson, trained, module),
        "Parameters": _size(saved.get("parameters")) if lesson.kind in TORCH_MODEL_KINDS
        else "not one zoo model: its file holds the values it fitted (see How to load it)",
        "Model file": f"models/{lesson_id}/model.pt, {_size(saved.get('file_bytes'), ' bytes')}",
        "Training data": f"{lesson.dataset}, source `{source}`"
                         + (f" ({STAND_IN_DATA[source]})" if source in STAND_IN_DATA else "") + samples,
        "Hyper-parameters as trained": "\n\n```yaml\n" + yaml.safe_dump(
            as_trained(lesson, source), sort_keys=False, default_flow_style=None).strip() + "\n```",
        "Training time": over_seeds(trained.get(SEEDS_KEY), trained.get("seed", lesson.seed), trained["train_seconds"],
                                    lambda seconds: f"{seconds:.1f} s") + f", on {trained['device']}",
        "Hardware": f"CPU {env['cpu']}" + (f"; GPU {env['gpu']}" if env.get("gpu") else "; no GPU used")
        if env else NOT_RECORDED,
        "Software": software(env),
    }


def card_fields(lesson_id: str, lesson: Any, metrics: dict[str, Any], trained: dict[str, Any],
                headline: tuple[str, float] | None, verdict: str, module: Any = None) -> dict[str, str]:
    """Every field of the card; ``module``: the lesson's untrained torch architecture, if it has one."""
    seeds = (metrics.get(SEEDS_KEY) or {}).get("seeds", 1)
    reference = f"{lesson.reference} ({lesson.reference_accuracy:.2%})" if lesson.reference_accuracy is not None \
        else lesson.reference
    limits = known_limits(metrics, trained, verdict, seeds) if metrics else ["not evaluated yet"]
    return {
        "What it is": describe(lesson_id, lesson) + f" ({lesson.kind} lesson)",
        "Tutorial": f"{chapters(lesson_id)}; the tutorial reported: {lesson.reference}",
        **training_fields(lesson_id, lesson, trained, module),
        "Result per seed": f"{headline[0]}: "
        f"{over_seeds(metrics.get(SEEDS_KEY), metrics.get('seed', trained.get('seed', lesson.seed)), headline[1])}"
        + "".join(f"; {name}: {each_seed(block)}"
                  for name, block in (metrics.get(SEEDS_KEY) or {}).get(BESIDE, {}).items())
        if headline
        else f"not evaluated yet: run `dvc repro evaluate@{lesson_id}`",
        "Reference and verdict": f"{reference}; verdict: {verdict}",
        "How to load it": loading(lesson_id, lesson),
        "Known limits": "\n" + "\n".join(f"- {line}" for line in limits),
    }


def render_card(lesson_id: str, fields: dict[str, str]) -> str:
    return "\n".join([f"# Model card: {lesson_id}", "", *(f"**{name}:** {fields[name]}\n" for name in FIELDS)])
