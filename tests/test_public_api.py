"""The public surface: what `import workbench` exports, and that every module says what it owns."""

import importlib
import pkgutil
import subprocess
import sys

import workbench


def test_exported_members_exist():
    assert workbench.__all__ == ["__version__", "Settings", "load_settings", "get_spark", "WorkbenchError"]
    for name in workbench.__all__:
        assert hasattr(workbench, name), name


def test_every_module_has_a_docstring():
    missing = []
    for info in pkgutil.walk_packages(workbench.__path__, "workbench."):
        if info.name.split(".")[-1].startswith("_") and not info.ispkg:
            continue
        module = importlib.import_module(info.name)
        if not (module.__doc__ or "").strip():
            missing.append(info.name)
    assert not missing, f"modules without a docstring saying what they own: {missing}"


def test_importing_the_package_starts_nothing_heavy():
    code = "import sys, workbench; print(sorted(m for m in ('pyspark', 'mlflow', 'evidently', 'shap') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr
