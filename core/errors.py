"""User-facing errors. Each message says what was wrong and what to do; no traceback needed."""


class AnimateSuiteError(Exception):
    """Base class for errors whose message is meant for the person running the job."""


class InputError(AnimateSuiteError, ValueError):
    """An input value is unusable. The message names the input and what was expected."""

    def __init__(self, input_name: str, problem: str, expected: str = ""):
        self.input_name = input_name
        message = f"Input '{input_name}': {problem}"
        if expected:
            separator = " " if message.rstrip().endswith((".", "!", "?")) else ". "
            message = message.rstrip() + separator + f"Expected {expected}."
        super().__init__(message)


def memory_refusal(input_name: str, what: str, needed_bytes: float, available_bytes: float, lower_with: str) -> InputError:
    """The error for a job whose estimated memory does not fit: the estimate and what brings it down."""
    return InputError(input_name, f"{what} needs about {needed_bytes / 1024**3:.1f} GB of memory, more than the "
                      f"{available_bytes / 1024**3:.1f} GB available", f"less: {lower_with}")


def available_memory_bytes() -> int:
    """Memory this process can still use: MemAvailable on Linux, else a conservative 8 GB."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 * 1024**3


class ModelNotFoundError(AnimateSuiteError, FileNotFoundError):
    """A model file or folder the job needs is not where ComfyUI looks for it."""

    def __init__(self, what: str, expected: str, searched: list[str], source: str = ""):
        self.searched = list(searched)
        where = ", ".join(searched) if searched else "(no folder is registered for it)"
        message = f"{what}: could not find {expected}. Searched: {where}."
        if source:
            message += f" Get it from {source}."
        super().__init__(message)


class CheckpointError(AnimateSuiteError):
    """A model file exists but cannot be read (truncated, wrong format, unsafe pickle)."""


class CheckpointMismatchError(CheckpointError):
    """A model file was read but its weights do not fit the model it is loaded into."""

    SAMPLE = 5

    def __init__(self, path: str, model_name: str, missing=(), unexpected=(), wrong_shape=()):
        self.path = str(path)
        self.model_name = model_name
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.wrong_shape = sorted(wrong_shape)
        parts = [f"'{self.path}' does not match {model_name}"]
        for label, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("wrong shape", self.wrong_shape),
        ):
            if keys:
                sample = ", ".join(keys[: self.SAMPLE])
                more = f" (+{len(keys) - self.SAMPLE} more)" if len(keys) > self.SAMPLE else ""
                parts.append(f"{len(keys)} {label} keys: {sample}{more}")
        message = "; ".join(parts) + ". Is this the right file for this loader?"
        super().__init__(message)

