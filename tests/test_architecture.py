"""The package map holds: which parts of dpda load without which others."""

from __future__ import annotations

import json
import subprocess
import sys


def loaded_after(statement: str) -> set:
    """Names of the modules loaded in a fresh interpreter after running ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_audio_numpy_helpers_load_without_torch():
    mods = loaded_after("import numpy as np\nfrom dpda.audio import pad_or_crop, sliding_windows\n"
                        "assert sliding_windows(np.zeros(10, np.float32), 4).shape == (3, 4)")
    assert "torch" not in mods


def test_inference_windows_load_without_torch():
    mods = loaded_after("import numpy as np\nfrom dpda.inference.windows import WindowSpec, score_windows\n"
                        "spec = WindowSpec(4, 'full')\n"
                        "out = list(score_windows(lambda b: b.sum(1), [('a', spec(np.ones(10, np.float32)))], "
                        "batch_size=2, crop_samples=4))\nassert out == [('a', 4.0)], out\n"
                        "from dpda.inference.card import ModelCard\n"
                        "card = ModelCard.from_payload({'model_name': 'lcnn', 'sample_rate': 16000, 'crop_samples': 4})\n"
                        "assert card.as_dict()['crop_samples'] == 4")
    assert "torch" not in mods


def test_inference_does_not_load_train():
    mods = loaded_after("import dpda.inference as inf\nfrom dpda.inference import *\n"
                        "import dpda.detection\nimport dpda.inference.manifest, dpda.inference.card, dpda.inference.modelfile")
    assert "dpda.inference.scorer" in mods
    assert not [m for m in mods if m == "dpda.train" or m.startswith("dpda.train.")]


def module_imports(package_dir, package: str) -> dict:
    """``module -> set of modules of the package it imports`` (module level and inside functions alike)."""
    import ast
    from pathlib import Path

    root = Path(package_dir)
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        if is_init:
            parts = parts[:-1]
        names[".".join([package] + parts)] = (path, is_init)
    graph = {}
    for name, (path, is_init) in names.items():
        here = name if is_init else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]
            found |= {t for t in targets if t in names and t != name}
        graph[name] = found
    return graph


def find_cycle(graph: dict):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_augment_imports_form_no_cycle():
    import dpda.augment

    graph = module_imports(dpda.augment.__path__[0], "dpda.augment")
    assert "dpda.augment.base" in graph["dpda.augment.noise"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check itself works


def test_leaf_augmentations_do_not_import_the_builder_or_the_combinators():
    import dpda.augment

    graph = module_imports(dpda.augment.__path__[0], "dpda.augment")
    for leaf in ("noise", "reverb", "codec", "filters"):
        assert not graph[f"dpda.augment.{leaf}"] & {"dpda.augment.chain", "dpda.augment.builder",
                                                     "dpda.augment.combinators"}, leaf


def _is_train(module: str) -> bool:
    return module == "dpda.train" or module.startswith("dpda.train.")


def test_only_the_command_line_imports_train():
    import dpda

    graph = module_imports(dpda.__path__[0], "dpda")
    outside = {m: sorted(filter(_is_train, deps)) for m, deps in graph.items()
               if not _is_train(m) and not m.startswith("dpda.cli") and any(map(_is_train, deps))}
    assert not outside


def test_train_imports_form_no_cycle():
    import dpda.train

    graph = module_imports(dpda.train.__path__[0], "dpda.train")
    assert "dpda.train.steps" in graph["dpda.train.trainer"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
