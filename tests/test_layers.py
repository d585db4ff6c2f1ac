"""The package's layers, from the source: no import cycle, and no import that runs up a layer
(imports inside functions included), as DESIGN.md's layer table says."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "tinydgm"

# bottom to top; a module may import its own layer's modules and any layer below
LAYERS = [
    ("errors", ["tinydgm.errors"]),
    ("backend", ["tinydgm.backend"]),
    ("files and checkpoints", ["tinydgm.files", "tinydgm.checkpoint"]),   # whole-file writes, .npz + JSON, state mismatches
    ("numerics", ["tinydgm.numerics"]),
    ("engine", ["tinydgm.tensor", "tinydgm.ops", "tinydgm.check", "tinydgm.extend"]),
    ("building blocks", ["tinydgm.nn", "tinydgm.optim"]),
    ("probability", ["tinydgm.distributions", "tinydgm.estimators"]),
    ("public surface", ["tinydgm"]),                   # `import tinydgm as td`: what models and above use
    ("models", ["tinydgm.models"]),
    ("data, metrics, output", ["tinydgm.data", "tinydgm.metrics", "tinydgm.plots"]),
    ("experiments", ["tinydgm.experiments"]),
    ("face", ["tinydgm.cli", "tinydgm.__main__"]),
    ("testing", ["tinydgm.testing"]),                  # imported by tests and users, never by the package
]


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name):
    """The index of the layer that owns module `name` (the longest matching prefix)."""
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    return rank


def imports(name, path, known):
    """The tinydgm modules that `name` imports anywhere in its source (functions included)."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "tinydgm")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                                   # relative: from . import x
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "tinydgm":
                continue
            for a in node.names:                             # `from tinydgm import nn` names a module
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
    return out - {name}


def graph():
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_no_import_runs_up_a_layer():
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in graph().items() for b in sorted(targets) if layer_of(b) > layer_of(a)]
    assert upward == []


def test_no_import_cycle():
    g, state, cycles = graph(), {}, []

    def visit(node, stack):                                   # depth-first, colouring grey then black
        state[node] = "grey"
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == "grey":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "black"

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    assert cycles == []


RUN_TIME = {"ctypes", "threadpoolctl"}     # glibc's mallopt and BLAS's thread limits: the run-time policy's libraries


def libraries(path):
    """The top-level names of what the source at `path` imports from outside tinydgm (functions included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out - {"tinydgm"}


def test_the_run_time_policy_is_the_experiments_layers():
    """BLAS threads and the allocator are set by tinydgm.experiments.runtime, which only the command line and
    the scripts call: no module below the experiments layer imports the libraries that set them."""
    experiments = [name for name, _ in LAYERS].index("experiments")
    assert layer_of("tinydgm.experiments.runtime") == experiments
    below = {f"{m} imports {sorted(libraries(p) & RUN_TIME)}" for m, p in modules().items()
             if layer_of(m) < experiments and libraries(p) & RUN_TIME}
    assert below == set()
    assert RUN_TIME <= libraries(modules()["tinydgm.experiments.runtime"])    # the check looks where they are


@pytest.mark.parametrize("source, message", [
    ("import tinydgm.cli\n", "up a layer"),
    ("def f():\n    from tinydgm.experiments import runs\n", "up a layer"),
])
def test_the_check_sees_upward_imports(tmp_path, source, message):
    """The checker itself: an upward import in a model (even inside a function) is found."""
    path = tmp_path / "model.py"
    path.write_text(source)
    found = imports("tinydgm.models.vae.model", path, modules())
    assert any(layer_of(b) > layer_of("tinydgm.models.vae.model") for b in found), message
