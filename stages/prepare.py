from lessonflow.datasets import prepare_dataset
from stages import stage_main


def prepare(name, params, layout):
    """Decode one dataset once into cached uint8 tensors with a fixed train/val/test split."""
    prepared = prepare_dataset(name, params.datasets[name], layout.raw(name), layout.prepared(name))
    sizes = ", ".join(f"{split} {len(prepared[f'y_{split}'])}" for split in ("train", "val", "test")
                      if f"y_{split}" in prepared) or ", ".join(sorted(set(prepared) - {"dataset", "source"}))
    print(f"prepare@{name}: {prepared['source']} data, {sizes}")


if __name__ == "__main__":
    stage_main("prepare", "datasets", prepare)
