"""The design lives in the repository: docs/ holds it, and nothing points elsewhere.

Every Python, Markdown and notebook file is read: none may refer to design documents kept outside the
repository, every Markdown path under docs/ it names must exist (with its `#section`, if it gives one), every
relative link inside docs/ must lead somewhere, and every registered architecture must have its page under
docs/architectures/, linked from docs/README.md. Each check is a small function, shown to fail on a broken
example (the negative controls) before it is trusted on the repository; the examples are assembled from
pieces, so that this file passes its own checks."""
import re
from pathlib import Path

import pytest

import config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SKIP_DIRS = {"__pycache__", "data_cache", "node_modules"}  # and every hidden folder (.git, checkpoints, caches)

# A design document outside the repository: a path into a shared folder, or one of the outside documents by
# name (upper case, `.md`), or by name and section number.
OUTSIDE_DOC = re.compile(r"shared/[A-Za-z_]+\.md|\b(?:DESIGN|ARCHITECTURES|STYLE)(?:\.md\b|\s+\d)")
DOC_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]+?\.md(?:#[\w-]+)?")
LINK = re.compile(r"\]\(([^()\s]+)\)")


def repo_files(suffixes=(".py", ".md", ".ipynb")) -> list[Path]:
    out = []
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(p.startswith(".") or p in SKIP_DIRS for p in rel.parts[:-1]):
            continue
        if path.suffix in suffixes and path.is_file():
            out.append(path)
    return out


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    """The `#anchors` of a Markdown file's headings (code blocks skipped; repeated headings get -1, -2...)."""
    out, seen, fenced = set(), {}, False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


def outside_references(text: str) -> list[str]:
    return OUTSIDE_DOC.findall(text)


def target_problem(path: Path, anchor: str) -> str | None:
    """Why `path#anchor` leads nowhere, or None when it is fine."""
    if not path.exists():
        return "no such file"
    if anchor and path.suffix == ".md" and anchor not in anchors(path):
        return f"no section #{anchor} (sections: {sorted(anchors(path))})"
    return None


def broken_doc_paths(text: str) -> list[str]:
    """The Markdown paths under docs/ (with their #section, if any) named in `text` that lead nowhere."""
    out = []
    for ref in DOC_PATH.findall(text):
        path, _, anchor = ref.partition("#")
        if (why := target_problem(ROOT / path, anchor)) is not None:
            out.append(f"{ref}: {why}")
    return out


def broken_links(md: Path, text: str | None = None) -> list[str]:
    """The relative Markdown links of `md` that lead nowhere (web links are not followed)."""
    out = []
    for target in LINK.findall(md.read_text(encoding="utf-8") if text is None else text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        if (why := target_problem((md.parent / path).resolve() if path else md, anchor)) is not None:
            out.append(f"{target}: {why}")
    return out


def model_file(arch: str) -> str:
    """The file that holds the model class of `arch`, as the registry names it."""
    cls = config.MODEL_CLASSES[arch]
    module = cls.split(":")[0] if isinstance(cls, str) else cls.__module__
    return module.replace(".", "/") + ".py"


def page_problems(archs, docs=DOCS) -> list[str]:
    """What is missing for each architecture: its page, the page's sections, its code file, its index entry."""
    index = (docs / "README.md").read_text(encoding="utf-8") if (docs / "README.md").exists() else ""
    out = []
    for arch in archs:
        page = docs / "architectures" / f"{arch}.md"
        if not page.exists():
            out.append(f"{arch}: no page {page.relative_to(ROOT)}")
            continue
        text = page.read_text(encoding="utf-8")
        out += [f"{arch}: no section '## {s}'" for s in ("Source", "What mnemo changes, and why")
                if f"\n## {s}\n" not in text]
        if model_file(arch) not in text:
            out.append(f"{arch}: its page does not name {model_file(arch)}")
        if f"(architectures/{arch}.md)" not in index:
            out.append(f"{arch}: docs/README.md does not link its page")
    return out


# --- negative controls: each check catches what it is for -------------------------------------------
def test_the_checks_catch_what_they_are_for():
    outside = "see " + "shared/" + "DESIGN." + "md and " + "DESIGN" + " 3.5, or ARCHITECTURES" + ".md"
    assert len(outside_references(outside)) == 3
    assert outside_references("docs/design.md#contracts; the design of the loop; shared memory") == []
    assert len(broken_doc_paths("docs/" + "no_such_page.md, docs/design.md#" + "no-such-section")) == 2
    assert broken_doc_paths("(docs/design.md#layout) and docs/architectures/rmt.md.") == []
    assert broken_links(DOCS / "README.md", "[a](design.md#no-such-section) [b](nowhere.md) [c](https://x.org)") \
        == ["design.md#no-such-section: no section #no-such-section (sections: " +
            str(sorted(anchors(DOCS / "design.md"))) + ")", "nowhere.md: no such file"]
    assert slug("Names other scripts rely on") == "names-other-scripts-rely-on"
    assert slug("GPT (`gpt`)") == "gpt-gpt" and slug("log.csv columns") == "logcsv-columns"


def test_an_architecture_without_its_page_is_reported(monkeypatch):
    monkeypatch.setitem(config.MODEL_CLASSES, "no_such_arch", "modules.no_such_arch:Model")
    assert page_problems(["no_such_arch"]) == ["no_such_arch: no page docs/architectures/" + "no_such_arch.md"]


# --- the repository ---------------------------------------------------------------------------------
def test_the_files_are_found():
    files = repo_files()
    names = {f.relative_to(ROOT).as_posix() for f in files}
    assert {"train.py", "README.md", "docs/design.md", "modules/gpt.py", "tests/test_docs.py"} <= names
    assert any(f.suffix == ".ipynb" for f in files)


def test_nothing_refers_to_design_documents_outside_the_repository():
    found = {f.relative_to(ROOT).as_posix(): refs for f in repo_files()
             if (refs := outside_references(f.read_text(encoding="utf-8", errors="replace")))}
    assert not found, f"point these to docs/ instead: {found}"


def test_every_docs_path_named_in_the_repository_exists():
    broken = {f.relative_to(ROOT).as_posix(): refs for f in repo_files()
              if (refs := broken_doc_paths(f.read_text(encoding="utf-8", errors="replace")))}
    assert not broken, broken


def test_every_link_inside_docs_leads_somewhere():
    broken = {md.relative_to(ROOT).as_posix(): refs for md in sorted(DOCS.rglob("*.md")) if (refs := broken_links(md))}
    assert not broken, broken


@pytest.mark.parametrize("arch", sorted(config.MODEL_CONFIGS))
def test_every_architecture_has_its_page(arch):
    assert page_problems([arch]) == []
