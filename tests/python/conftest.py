"""Shared fixtures of the Python tests: the phinfer module (built, or installed) and the golden models.

Run by ctest (test `python_bindings`, with PYTHONPATH=build/python), or by hand:
    PYTHONPATH=build/python /usr/bin/python3 -m pytest tests/python
"""

import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("PHINFER_SHARED_DIR", ROOT.parent / "shared"))
MODELS = SHARED / "models"

if not MODELS.is_dir():
    raise RuntimeError(f"the shared test data is missing: {MODELS} (expected ../shared beside the project root, "
                       "or PHINFER_SHARED_DIR)")

try:
    import phinfer  # noqa: F401
except ImportError:
    built = ROOT / "build" / "python"
    if not (built / "phinfer").is_dir():
        raise RuntimeError("the phinfer module is neither importable nor built: build it with "
                           "cmake -DPHINFER_BUILD_PYTHON=ON (scripts/test.sh does), or install it "
                           "(scripts/install-python.sh)")
    sys.path.insert(0, str(built))
    import phinfer  # noqa: F401


def load_golden(model_dir):
    with open(model_dir / "golden.json") as f:
        golden = json.load(f)
    return {case["name"]: case for case in golden["cases"]}


def golden_model_fixtures(name, folder):
    """Session fixtures `name` (the loaded phinfer.Model) and `name`_golden (its golden cases by name)."""
    @pytest.fixture(scope="session", name=name)
    def model():
        return phinfer.Model(MODELS / folder, threads=2)

    @pytest.fixture(scope="session", name=name + "_golden")
    def golden():
        return load_golden(MODELS / folder)

    return model, golden


mha_model, mha_golden = golden_model_fixtures("mha", "phi3-tiny-mha")
phi4_model, phi4_golden = golden_model_fixtures("phi4", "phi4-tiny-synth")


@pytest.fixture(scope="session")
def mha_dir():
    return MODELS / "phi3-tiny-mha"


@pytest.fixture(scope="session")
def longrope():
    """A model with a 131072-token context: long generations for the interrupt and GIL tests."""
    return phinfer.Model(MODELS / "phi3-tiny-gqa-longrope", threads=2)
