"""multivolumecopy: back up a large file tree onto a series of smaller drives."""

__version__ = "0.1.0"
