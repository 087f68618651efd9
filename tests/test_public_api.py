"""memoracle's public surface is exactly ``__all__``: every name in it imports, nothing
else public lives at the top, and importing the package imports none of the harnesses."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import memoracle

_PROBE = """
import inspect, json, sys
import memoracle
before = sorted(m for m in sys.modules if m.startswith("memoracle."))
loaded = sorted(name for name in memoracle.__all__ if getattr(memoracle, name) is not None)
public = sorted(n for n, v in vars(memoracle).items()
                if not n.startswith("_")
                and not (inspect.ismodule(v) and v.__name__.startswith("memoracle.")))
print(json.dumps({"before": before, "loaded": loaded, "public": public}))
"""


def _probe() -> dict[str, object]:
    """What a fresh interpreter sees of memoracle, before and after using every name."""
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_public_surface_is_exactly_all_and_every_name_imports() -> None:
    seen = _probe()
    assert seen["public"] == sorted(memoracle.__all__)
    assert seen["loaded"] == sorted(memoracle.__all__)
    assert dir(memoracle) == sorted(memoracle.__all__) == sorted(memoracle._PUBLIC)


def test_importing_memoracle_loads_no_harness() -> None:
    assert _probe()["before"] == []


@pytest.mark.parametrize("name", memoracle.__all__)
def test_every_public_name_is_documented(name: str) -> None:
    value = getattr(memoracle, name)
    assert inspect.getdoc(value) or name == "CHECKS", name
    assert name in (memoracle.__doc__ or ""), f"{name} is not in memoracle's docstring"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'harness'"):
        memoracle.harness  # noqa: B018
