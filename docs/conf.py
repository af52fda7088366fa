"""Sphinx configuration: ``sphinx-build -W -b html docs docs/_build`` (CI builds it, warnings as errors)."""

project = "multivolumecopy"
author = "the multivolumecopy developers"
extensions: list[str] = []
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
highlight_language = "text"
