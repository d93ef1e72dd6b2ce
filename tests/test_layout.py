"""The package's shape: no import cycle between its modules, few modules at the root, no private names borrowed
across modules, and no reference to a file outside the repository."""
from __future__ import annotations

import ast
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
PACKAGE = os.path.join(ROOT, 'vmae_jax')
MAX_ROOT_MODULES = 8


def _modules() -> dict[str, str]:
  """Dotted module name → file path, for every .py file of the package."""
  out = {}
  for dirpath, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith('.py'):
        rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
        if rel[-1] == '__init__':
          rel = rel[:-1]
        out['.'.join(rel)] = os.path.join(dirpath, f)
  return out


def _imports(path: str, name: str, modules: dict[str, str]) -> list[tuple[str, list[str]]]:
  """(imported package module, names taken from it) for every import in the file, top level or in a function."""
  is_pkg = path.endswith('__init__.py')
  found = []
  for node in ast.walk(ast.parse(open(path, encoding='utf-8').read(), path)):
    if isinstance(node, ast.Import):
      found += [(a.name, []) for a in node.names if a.name.split('.')[0] == 'vmae_jax']
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:   # relative import
        parts = name.split('.')[:len(name.split('.')) - node.level + (1 if is_pkg else 0)]
        base = '.'.join(parts + ([base] if base else []))
      if base.split('.')[0] != 'vmae_jax':
        continue
      for alias in node.names:   # `from pkg import module` imports the submodule
        sub = f'{base}.{alias.name}'
        found.append((sub, []) if sub in modules else (base, [alias.name]))
  return [(m, names) for m, names in found if m in modules]


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  return {name: {m for m, _ in _imports(path, name, modules) if m != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle (as a path that returns to its start), or None. Iterative DFS with colours."""
  colour = dict.fromkeys(graph, 0)   # 0 unseen, 1 on the stack, 2 done
  for start in sorted(graph):
    if colour[start]:
      continue
    stack, path = [(start, iter(sorted(graph[start])))], [start]
    colour[start] = 1
    while stack:
      node, children = stack[-1]
      child = next(children, None)
      if child is None:
        colour[node] = 2
        stack.pop()
        path.pop()
      elif colour[child] == 1:
        return path[path.index(child):] + [child]
      elif colour[child] == 0:
        colour[child] = 1
        stack.append((child, iter(sorted(graph[child]))))
        path.append(child)
  return None


def test_the_package_has_no_import_cycle():
  graph = _graph()
  assert len(graph) > 40 and 'vmae_jax.train.trainer' in graph['vmae_jax.main'] | {
      m for deps in graph.values() for m in deps}
  assert _cycle(graph) is None, 'import cycle: ' + ' → '.join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}) == ['a', 'b', 'c', 'a']
  assert _cycle({'a': {'b'}, 'b': set(), 'c': {'a', 'b'}}) is None


def test_few_modules_at_the_root():
  root = sorted(f for f in os.listdir(PACKAGE) if f.endswith('.py') and f != '__init__.py')
  assert len(root) <= MAX_ROOT_MODULES, root


def test_no_module_imports_another_modules_private_names():
  modules = _modules()
  borrowed = []
  for name, path in modules.items():
    for source, names in _imports(path, name, modules):
      borrowed += [f'{name} takes {source}.{n}' for n in names if n.startswith('_') and source != name]
  assert not borrowed, borrowed


def test_nothing_points_outside_the_repository():
  # the design notes this project was built from are not part of it: code, configs, tests and docs cite the
  # project's own docs/ or the official repositories instead
  pattern = re.compile(r"(?<![\w/.])spec/|\.\./shared|'\.\.',\s*(?:'\.\.',\s*)?'shared'")
  hits = []
  for top in ('vmae_jax', 'configs', 'tests', 'docs', 'launch', 'notebooks'):
    for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
      for f in files:
        if f.endswith(('.py', '.md', '.sh', '.ipynb')) and f != 'test_layout.py':
          text = open(os.path.join(dirpath, f), encoding='utf-8').read()
          hits += [f'{os.path.relpath(os.path.join(dirpath, f), ROOT)}: {m.group(0)}' for m in pattern.finditer(text)]
  for f in ('README.md', 'BENCHMARKS.md', 'setup.py'):
    text = open(os.path.join(ROOT, f), encoding='utf-8').read()
    hits += [f'{f}: {m.group(0)}' for m in pattern.finditer(text)]
  assert not hits, hits
