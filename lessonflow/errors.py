"""The errors a user can fix, shared by every layer: a stage prints them as one line, not a traceback."""


class ParamsError(ValueError):
    """A params.yaml problem, phrased for the person who has to fix the file."""


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; continuing would only write garbage."""


class ChecksumError(RuntimeError):
    """The bytes on disk are not the bytes the dataset publishes."""


class DownloadError(RuntimeError):
    """Every mirror failed; the message lists what each one answered."""
