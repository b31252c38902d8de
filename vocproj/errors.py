"""The project's error types: each message names the file involved and says what to do."""


class VocprojError(Exception):
    """Base of every error vocproj raises on purpose; the CLI prints it without a traceback."""


class ConfigError(VocprojError):
    """A profile YAML is missing, malformed, or holds an unknown key or a wrong type."""


class DatasetError(VocprojError):
    """A VOC tree, split file, annotation or image is missing or unreadable."""


class DownloadError(VocprojError):
    """A VOC archive could not be fetched, verified or extracted."""


class CheckpointError(VocprojError):
    """A checkpoint or weight file is missing, corrupt or incompatible."""


class ScoresError(VocprojError):
    """A scores file is missing, unreadable, or holds arrays of the wrong shape or range."""


class TrainingDiverged(VocprojError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingFailed(VocprojError):
    """Training in other processes (torchrun) ended with an error; finished epochs are kept."""


class FolderInUse(VocprojError):
    """Another process holds the folder's lock (vocproj/locks.py): a run of the same profile."""


class RefusedFile(VocprojError):
    """A path given as a file is a device, pipe, socket or folder, or larger than vocproj reads."""


class OutOfSpace(VocprojError):
    """A write failed for want of space: a full disk, a used-up quota or the file size limit."""
