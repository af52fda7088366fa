from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="multivolumecopy",
    version="0.1.0",
    description="Back up a large file tree onto a series of smaller removable drives.",
    long_description=Path(__file__).with_name("README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    packages=find_packages(include=["multivolumecopy", "multivolumecopy.*"]),
    python_requires=">=3.9",
    install_requires=["tqdm", "psutil"],
    extras_require={
        "test": ["pytest", "pexpect", "hypothesis"],
        "dev": ["pytest", "pexpect", "hypothesis", "ruff", "mypy"],
    },
    entry_points={"console_scripts": ["multivolumecopy=multivolumecopy.cli:console_main"]},
    data_files=[
        ("share/zsh/site-functions", ["data/autocomplete.zsh/_multivolumecopy"]),
        ("share/bash-completion/completions", ["data/autocomplete.bash/multivolumecopy"]),
    ],
    license="MIT",
)
