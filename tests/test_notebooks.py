"""Static checks of the stored notebooks (docs/design.md#notebooks). nbval (tests/run.sh) re-runs them and compares
outputs, but it never checks a cell that was never executed; these tests make sure every code cell was run,
top to bottom in a fresh kernel, without errors, and that each notebook seeds and pins its threads.

Each test loops over every notebook found and reports every offending notebook at once. A missing or empty
notebooks/ folder is a failure: the notebooks are part of the product, and a check of nothing passes nothing."""
import json
import re
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

SEEDS = re.compile(r"seed_everything\(|manual_seed\(|random\.seed\(|np\.random\.seed\(|default_rng\(")
THREADS = re.compile(r"set_num_threads\(\s*1\s*\)|set_threads\(\s*1\s*\)")
# A cell that draws (a figure, or the HTML view of a trace) shows nbval nothing it can compare: nbval compares
# text only. Such a cell must also print what it shows (the rounded numbers of the figure, the trace as text or
# a count of its calls).
DRAWS = re.compile(r"plt\.|\.plot\(|imshow|\.show\(\)|\bdisplay\(")
# Notebooks that compute with torch must pin one thread (losses differ in the 4th decimal between thread
# counts); a notebook that only uses `data` or `tokenizers` does no float work worth pinning.
USES_TORCH = re.compile(r"^\s*(import|from)\s+(torch|modules|train|inference|model_comparison)\b", re.M)


def notebooks():
    """(path, parsed JSON) of every notebook under notebooks/, Jupyter's checkpoints aside."""
    assert NOTEBOOKS.is_dir(), f"{NOTEBOOKS} is missing"
    paths = sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    assert paths, f"no notebooks under {NOTEBOOKS}"
    out = []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            out.append((p, json.load(f)))  # invalid JSON fails here, naming the file in the traceback
    return out


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def source(cell):
    s = cell["source"]
    return s if isinstance(s, str) else "".join(s)


def text(output):
    t = output.get("text", "")
    return t if isinstance(t, str) else "".join(t)


def test_the_notebooks_exist():
    assert len(notebooks()) >= 1


def test_every_cell_that_draws_also_prints_what_it_shows():
    problems = []
    for p, nb in notebooks():
        for i, c in enumerate(code_cells(nb)):
            if DRAWS.search(source(c)) and not any(o.get("output_type") == "stream" and o.get("name") == "stdout"
                                                   and text(o).strip() for o in c.get("outputs", [])):
                problems.append(f"{p.name} code cell {i} draws but prints nothing for nbval to compare")
    assert not problems, "\n".join(problems)


def test_every_notebook_is_valid_nbformat_4_json():
    bad = [p.name for p, nb in notebooks() if nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list)
           or not code_cells(nb)]
    assert not bad, f"not nbformat 4 with code cells: {bad}"


def test_every_code_cell_ran_in_order_in_a_fresh_kernel():
    problems = []
    for p, nb in notebooks():
        counts = [c.get("execution_count") for c in code_cells(nb)]
        never = [i for i, n in enumerate(counts) if n is None]
        if never:
            problems.append(f"{p.name}: code cells {never} were never executed (nbval would not check them)")
        elif counts != list(range(1, len(counts) + 1)):
            problems.append(f"{p.name}: execution counts {counts}; run it top to bottom in a fresh kernel")
    assert not problems, "\n".join(problems)


def test_no_error_outputs():
    problems = []
    for p, nb in notebooks():
        for i, c in enumerate(code_cells(nb)):
            for o in c.get("outputs", []):
                if o.get("output_type") == "error":
                    problems.append(f"{p.name} cell {i}: {o.get('ename')}: {o.get('evalue')}")
                elif "Traceback (most recent call last)" in text(o):
                    problems.append(f"{p.name} cell {i} printed a traceback")
    assert not problems, "\n".join(problems)


def test_every_notebook_seeds_and_pins_torch_to_one_thread():
    problems = []
    for p, nb in notebooks():
        src = "\n".join(source(c) for c in code_cells(nb))
        if not SEEDS.search(src):
            problems.append(f"{p.name} never seeds (tools.seed_everything / torch.manual_seed / random.seed)")
        if USES_TORCH.search(src) and not THREADS.search(src):
            problems.append(f"{p.name} computes with torch but never calls torch.set_num_threads(1)")
    assert not problems, "\n".join(problems)


def test_no_notebook_reads_the_design_folder_or_ignores_every_cell():
    problems = []
    for p, nb in notebooks():
        cells = code_cells(nb)
        if any("/work/shared" in source(c) for c in cells):
            problems.append(f"{p.name} reads /work/shared (the product must not depend on it)")
        with_output = [c for c in cells if c.get("outputs")]
        ignored = [c for c in with_output if re.search(r"NBVAL_(IGNORE_OUTPUT|SKIP)", source(c))]
        if with_output and len(ignored) == len(with_output):
            problems.append(f"{p.name}: nbval ignores every cell that has output")
    assert not problems, "\n".join(problems)


# What JupyterLab 4 writes when it opens and saves a notebook: the kernelspec that ipykernel installs, the
# language_info its kernel reports (the version aside: that is the Python of whoever opens the notebook).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3"}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def changed_by_jupyterlab(path, nb, text):
    """What opening and saving notebook `path` (parsed `nb`, stored `text`) in JupyterLab would change:
    - a kernelspec or language_info other than its kernel's, rewritten on open (the notebook is then modified);
    - stored widget state: JupyterLab's default (saveState off) never writes it, and with saveState on it marks
      the notebook modified on open and rewrites the state on save;
    - a widget view in an output, whose model is then nowhere ("Error displaying widget: model not found"; the
      text/plain form beside it stays);
    - JSON not in nbformat's form (sorted keys, one-space indent, final newline), which saving rewrites."""
    import nbformat
    found = []
    meta = nb["metadata"]
    if meta.get("kernelspec") != KERNELSPEC:
        found.append(f"{path.name}: kernelspec {meta.get('kernelspec')}, JupyterLab writes {KERNELSPEC}")
    info = {k: v for k, v in meta.get("language_info", {}).items() if k != "version"}
    if info != LANGUAGE_INFO:
        found.append(f"{path.name}: language_info {info}, ipykernel reports {LANGUAGE_INFO}")
    if "widgets" in meta:
        found.append(f"{path.name}: stores widget state (metadata.widgets)")
    views = [i for i, c in enumerate(code_cells(nb)) for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
    if views:
        found.append(f"{path.name}: code cells {views} show a widget view ({WIDGET_VIEW}) of a model not stored")
    saved = nbformat.writes(nbformat.reads(text, as_version=nbformat.NO_CONVERT))
    if saved.rstrip("\n") + "\n" != text:
        found.append(f"{path.name}: not in nbformat's JSON form (sorted keys, indent 1, final newline)")
    return found


def test_opening_and_saving_a_notebook_in_jupyterlab_changes_nothing():
    problems = [f for p, nb in notebooks() for f in changed_by_jupyterlab(p, nb, p.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)
    # the control: each kind of change is seen
    p, nb = notebooks()[0]
    nb["metadata"]["kernelspec"] = {**KERNELSPEC, "display_name": "Python 3"}
    nb["metadata"]["language_info"]["pygments_lexer"] = "python"
    nb["metadata"]["widgets"] = {}
    nb["cells"].append({"cell_type": "code", "execution_count": None, "id": "x", "metadata": {}, "source": "",
                        "outputs": [{"output_type": "display_data", "metadata": {}, "data": {WIDGET_VIEW: {}}}]})
    found = changed_by_jupyterlab(p, nb, json.dumps(nb))
    kinds = ("kernelspec", "language_info", "widget state", "widget view", "nbformat's JSON form")
    assert len(found) == len(kinds) and all(k in f for k, f in zip(kinds, found)), found


def test_every_notebook_finds_the_repository_by_walking_up():
    """A notebook copied out of notebooks/ (to the repo root, to another folder in it) still imports mnemo."""
    import os
    import subprocess
    import sys
    root = NOTEBOOKS.parent
    problems, setups = [], set()
    for p, nb in notebooks():
        first = source(code_cells(nb)[0])
        if 'abspath("..")' in first or "ROOT = next(" not in first:
            problems.append(f"{p.name}: the first cell must find the root by walking up, not by '..'")
            continue
        setups.add(first[:first.index("sys.path.insert(0, str(ROOT))\n")] + "sys.path.insert(0, str(ROOT))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MNEMO_ROOT")}
    for setup in setups:  # the notebooks share one snippet: each distinct one runs once per place
        for where in (root, root / "tokenizers", NOTEBOOKS):
            r = subprocess.run([sys.executable, "-c", setup + "import tools; print(tools.ROOT)"], cwd=where,
                               env=env, capture_output=True, text=True, timeout=120)
            if r.returncode != 0 or r.stdout.strip() != str(root):
                problems.append(f"from {where}: {r.stderr.strip()[-300:] or r.stdout}")
    assert not problems, "\n".join(problems)


EXERCISE = re.compile(r"^#+\s*Exercise\b.*$", re.M)
HEADING = re.compile(r"^#+\s", re.M)


def exercises(nb):
    """Each exercise of a notebook: (its heading line, the cells up to the next heading)."""
    cells, found = nb["cells"], []
    for i, c in enumerate(cells):
        if c["cell_type"] == "markdown" and EXERCISE.search(source(c)):
            body = []
            for d in cells[i + 1:]:
                if d["cell_type"] == "markdown" and HEADING.search(source(d)):
                    break
                body.append(d)
            found.append((EXERCISE.search(source(c)).group(0), body))
    return found


def exercise_problems(name, nb):
    """What is wrong with a notebook's exercises (docs/design.md#notebooks): at least three, each with a cell
    the learner answers (it calls `tools.check` and, stored unanswered, says so), then a collapsed solution
    (JupyterLab's `source_hidden`) that nbval runs and whose stored check says "right"."""
    found, problems = exercises(nb), []
    if len(found) < 3:
        problems.append(f"{name}: {len(found)} exercises under a heading that begins 'Exercise', at least 3 wanted")
    for heading, body in found:
        code = [c for c in body if c["cell_type"] == "code"]
        solutions = [c for c in code if c.get("metadata", {}).get("jupyter", {}).get("source_hidden")]
        learner = [c for c in code if c not in solutions]
        said = lambda c: "".join(text(o) for o in c.get("outputs", []))  # noqa: E731
        if not any("check(" in source(c) and "not answered yet" in said(c) for c in learner):
            problems.append(f"{name} {heading!r}: no cell left for the learner that calls check() unanswered")
        if not solutions or not all(re.search(r"^right: ", said(c), re.M) for c in solutions):
            problems.append(f"{name} {heading!r}: no collapsed solution cell whose check prints 'right: '")
        if code and code[0] in solutions:
            problems.append(f"{name} {heading!r}: the solution comes before the learner's cell")
    return problems


def test_every_notebook_ends_with_exercises_that_check_themselves():
    problems = [f for p, nb in notebooks() for f in exercise_problems(p.name, nb)]
    assert not problems, "\n".join(problems)


def test_the_exercise_check_sees_each_fault():
    def cell(kind, src, out=None, hidden=False):
        c = {"cell_type": kind, "source": src, "metadata": {"jupyter": {"source_hidden": True}} if hidden else {}}
        if kind == "code":
            c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": out}] if out else []
        return c
    good = [cell("markdown", "### Exercise 1: one"), cell("code", "check(..., 3)", "n: not answered yet (...)"),
            cell("code", "check(3, 3)", "right: n = 3", hidden=True)]
    assert exercise_problems("nb", {"cells": good * 3}) == []
    assert "at least 3" in exercise_problems("nb", {"cells": good * 2})[0]
    unchecked = [good[0], cell("code", "x = 1"), good[2]]
    assert "unanswered" in exercise_problems("nb", {"cells": good * 2 + unchecked})[0]
    wrong = [good[0], good[1], cell("code", "check(2, 3)", "not yet: n = 2", hidden=True)]
    assert "'right: '" in exercise_problems("nb", {"cells": good * 2 + wrong})[0]
    shown = [good[0], good[1], cell("code", "check(3, 3)", "right: n = 3")]
    assert "'right: '" in exercise_problems("nb", {"cells": good * 2 + shown})[0]
