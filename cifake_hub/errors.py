"""Known errors: the CLI prints these as one line and exits 1 (set CIFAKE_DEBUG=1 for a traceback).

Every message says what was expected, what was received, and what to do next.
"""

from __future__ import annotations

import errno

# The system refusing a write (permissions, a read-only or full disk): the user's to fix.
USER_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


class CifakeError(Exception):
    """Base of every error the toolkit raises on purpose."""


class ConfigError(CifakeError, ValueError):
    """A configuration value is out of range or inconsistent."""


class SourceError(CifakeError):
    """An input (path, archive, folder, Hub id) is missing or not laid out as expected."""


class FileNameError(SourceError):
    """A file name does not follow the naming scheme of its dataset."""


class ClassNameError(SourceError):
    """A class name is not one of the ten CIFAR-10 classes."""


class InvalidImageError(CifakeError):
    """An image is unreadable, not RGB or not the expected size."""


class DatasetFolderError(CifakeError):
    """An output folder cannot be written or read as a CIFAKE dataset folder."""


class OutputFolderError(CifakeError):
    """An output path is not one the toolkit may write: it would overwrite the user's files."""


class CorruptFileError(CifakeError):
    """A file the toolkit wrote that no longer parses."""
