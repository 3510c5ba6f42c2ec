"""Loading the project's scripts (``bench/``, ``scripts/``, launch files), which are not packages, as modules.

Tests import it as ``test.scripts`` (see ``test/conftest.py``).
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: Path | str) -> ModuleType:
    """The module of the script at ``path`` (relative to the repository root, or absolute), run once per
    call. It is registered in ``sys.modules`` under a name made from its path while it runs, as dataclasses
    look their module up there."""
    path = ROOT / path
    name = (
        "savi_script_" + "_".join(path.relative_to(ROOT).with_suffix("").parts)
        if path.is_relative_to(ROOT)
        else path.stem
    )
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
