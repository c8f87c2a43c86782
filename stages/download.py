from lessonflow.datasets import download_dataset
from stages import stage_main


def download(name, params, layout):
    """Fetch one dataset's raw files from its configured source and verify their checksums."""
    source = download_dataset(name, params.datasets[name], params.profile, layout.raw(name))
    print(f"download@{name}: {source} data in {layout.raw(name)}")


if __name__ == "__main__":
    stage_main("download", "datasets", download)
