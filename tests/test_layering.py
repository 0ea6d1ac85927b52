"""The layering of the library, checked from its source with `ast`.

- Low modules import nothing of tfladder.
- Layers know no model, data, zoo, training, evaluation or command line;
  models know no data, zoo, training, evaluation or command line; nothing
  imports the command line.
- No import cycle (imports inside functions count too).
- No private TensorFlow / Keras module where a public API exists; the two
  places where none exists are listed here with the reason.
- `import tfladder` does not import tensorflow-datasets or mlxtend.
"""
import ast
import os
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tfladder"

LOW = {"tfladder.fileio", "tfladder.checks", "tfladder.serialization", "tfladder.zoo.modelcard",
       "tfladder.zoo.variants", "tfladder.quiet", "tfladder.replicas", "tfladder.gaussian",
       "tfladder.distribute", "tfladder.figures"}
OUTER = {"tfladder.data", "tfladder.zoo", "tfladder.training", "tfladder.evaluation",
         "tfladder.cli", "tfladder.keras_files", "tfladder.callbacks",
         "tfladder.benchmarking", "tfladder.analysis"}
FORBIDDEN = {
    "tfladder.layers": {"tfladder.models"} | OUTER,
    "tfladder.models": OUTER,
}
# Private modules used because no public API does the same (say why).
PRIVATE_ALLOWED = {
    ("tfladder.replicas", "tensorflow.python.framework"):
        "no public API reports whether op determinism is enabled",
    ("tfladder.keras_files", "keras.src.saving.serialization_lib"):
        "no public API holds Keras safe mode on against enable_unsafe_deserialization()",
    ("tfladder.models.keras_api", "keras.src.trainers.compile_utils"):
        "no public API marks a subclassed model's tracker as 'higher is better' for "
        "Keras' monitor callbacks",
}


def _module_name(path):
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path):
    """Every module imported anywhere in `path` (absolute names)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else \
        _module_name(path).rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = {m for m in _imports(path) if m in modules and m != name and m != "tfladder"}
        # `from tfladder.zoo import artifacts` imports the module tfladder.zoo.artifacts.
        graph[name] = {m for m in imported
                       if not any(other.startswith(m + ".") for other in imported)}
    return modules, graph


def _within(module, group):
    return module == group or module.startswith(group + ".")


def test_low_modules_import_nothing_of_tfladder():
    modules, graph = _graph()
    for name in LOW:
        assert name in modules, name
        assert graph[name] == set(), (name, graph[name])


@pytest.mark.parametrize("group", sorted(FORBIDDEN))
def test_inner_rings_do_not_import_outer_rings(group):
    _, graph = _graph()
    for name, imported in graph.items():
        if not _within(name, group):
            continue
        bad = {m for m in imported for outer in FORBIDDEN[group] if _within(m, outer)}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_nothing_imports_the_command_line():
    _, graph = _graph()
    assert [name for name, imported in graph.items() if "tfladder.cli" in imported] == []


def test_no_import_cycle():
    _, graph = _graph()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                cycle = stack[stack.index(child):] + [child]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if child not in state:
                visit(child, stack + [child])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_private_framework_modules_only_where_no_public_api_exists():
    modules, _ = _graph()
    used = set()
    for name, path in modules.items():
        for imported in _imports(path):
            if imported.startswith(("tensorflow.python", "keras.src", "tf_keras.src")):
                used.add((name, imported))
    unexpected = {(m, i) for m, i in used
                  if not any(m == a and i.startswith(p) for a, p in PRIVATE_ALLOWED)}
    assert not unexpected, unexpected


def test_no_module_reaches_into_another_modules_private_names():
    modules, _ = _graph()
    offenders = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        aliases = {alias.asname or alias.name.split(".")[-1]
                   for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                   for alias in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and node.value.id not in ("self", "cls"):
                offenders.append(f"{name}: {node.value.id}.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("tfladder"):
                offenders += [f"{name}: from {node.module} import {a.name}"
                              for a in node.names if a.name.startswith("_")
                              and not a.name.startswith("__")]
    allowed = {"tfladder: _quiet.silence_native_logs"}
    assert [o for o in offenders if o not in allowed] == []


def test_import_tfladder_leaves_tfds_and_mlxtend_unimported():
    script = ("import sys, tfladder\n"
              "print(sorted(m for m in ('tensorflow_datasets', 'mlxtend') if m in sys.modules))")
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert process.returncode == 0, process.stderr[-2000:]
    assert process.stdout.strip().splitlines()[-1] == "[]"
