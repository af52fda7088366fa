import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

try:
    import fcntl
except ImportError:  # not on Windows: builds there do not take turns
    fcntl = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
MAN_PAGE = "build/man/multivolumecopy.1"  # written while building (BuildPy), installed by data_files


class BuildPy(build_py):
    """Build the package, and write its man page from the parser (multivolumecopy/manpage.py)."""

    def run(self):
        super().run()
        sys.path.insert(0, str(HERE))  # this source's package, not one installed elsewhere
        try:
            from multivolumecopy.manpage import write
        finally:
            sys.path.remove(str(HERE))
        write(MAN_PAGE)


# pip builds in the source folder (build/, multivolumecopy.egg-info): two builds at once in one
# clone (README's first command in two terminals) copied over each other's files, and one failed
# with "No such file or directory" (a wheel with a half-copied file was as likely). They take
# turns: the lock is on this very file and goes with the build's process.
with open(__file__, "rb") as me:
    if fcntl is not None:
        fcntl.flock(me, fcntl.LOCK_EX)
    setup(
        name="multivolumecopy",
        version="0.1.0",
        description="Back up a large file tree onto a series of smaller removable drives.",
        long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
        long_description_content_type="text/x-rst",
        packages=find_packages(include=["multivolumecopy", "multivolumecopy.*"]),
        python_requires=">=3.9",
        install_requires=["tqdm", "psutil"],
        extras_require={
            "test": ["pytest", "pexpect", "hypothesis"],
            "dev": ["pytest", "pexpect", "hypothesis", "ruff", "mypy"],
        },
        entry_points={"console_scripts": ["multivolumecopy=multivolumecopy.cli:console_main"]},
        cmdclass={"build_py": BuildPy},
        data_files=[
            ("share/zsh/site-functions", ["data/autocomplete.zsh/_multivolumecopy"]),
            ("share/bash-completion/completions", ["data/autocomplete.bash/multivolumecopy"]),
            ("share/man/man1", [MAN_PAGE]),
            ("share/multivolumecopy/examples", ["data/examples/next-drive", "data/examples/notify-mail"]),
        ],
        license="MIT",
    )
