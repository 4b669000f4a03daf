"""The docs stay true to the tree: cross-references into the mini recipe's docs resolve, and the
package map (docs/architecture.md) names every module.

Configs, code and docs cite the recipe's README.md and NOTES.md by section, as `NOTES.md, "Stage 2
length"`. A section renamed or moved between the two files must not leave such a reference dangling:
each cited name has to start a heading, a list item or a bold paragraph of the file it names.
"""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs/mini_multilingual/asr1"
REF = re.compile(r'(?:asr1/)?(README|NOTES)\.md, "([^"]+)"')


def _anchors(path):
    """The texts that start a heading, a list item or a bold paragraph of `path`, whitespace collapsed."""
    starts = re.findall(r"^(?:#+ |- |\*\*)(.+)$", path.read_text(), flags=re.M)
    return [" ".join(s.split()) for s in starts]


def _tracked():
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def _references():
    """(citing file, cited file, section name) for every reference to the recipe's README.md / NOTES.md."""
    for name in _tracked():
        if not name.endswith((".md", ".py", ".sh", ".yaml")) or name.startswith("test/"):
            continue
        path = ROOT / name
        in_recipe = path.parent == RECIPE or path.parent.parent == RECIPE
        for match in REF.finditer(path.read_text()):
            cited, section = match.group(1), " ".join(match.group(2).split())
            if cited == "README" and not (in_recipe or "asr1/" in match.group(0)):
                continue  # the root README or another recipe's: not cited by section here
            yield name, RECIPE / f"{cited}.md", section


def test_recipe_doc_references_resolve():
    refs = list(_references())
    assert len(refs) > 50, "the pattern no longer finds the references"
    anchors = {}
    dangling = []
    for citing, cited, section in refs:
        if cited not in anchors:
            anchors[cited] = _anchors(cited)
        if not any(a.startswith(section) for a in anchors[cited]):
            dangling.append(f'{citing}: {cited.name}, "{section}"')
    assert not dangling, "references to no section:\n" + "\n".join(dangling)


def test_anchor_finder_sees_headings_lists_and_bold(tmp_path):
    doc = tmp_path / "NOTES.md"
    doc.write_text("# Title\n\n## Stage 2\nlength\n\n- What aligned: the LLM\n**Bold start** text\nplain line\n")
    assert _anchors(doc) == ["Title", "Stage 2", "What aligned: the LLM", "Bold start** text"]


def test_architecture_map_names_every_module():
    """Each module has one home that a newcomer finds by name in docs/architecture.md's map (the
    corpus modules are listed by corpus, the entry points by step)."""
    doc = (ROOT / "docs/architecture.md").read_text()
    tracked = _tracked()
    modules = [n for n in tracked if n.startswith("zipasr/") and n.endswith(".py")
               and not n.endswith("__init__.py") and "/bin/" not in n and "/corpora/" not in n]
    assert len(modules) > 30, "the module list is wrong"
    unnamed = [n for n in modules if not re.search(rf"^\s+{re.escape(Path(n).name)}\s", doc, flags=re.M)]
    assert not unnamed, "modules missing from docs/architecture.md: " + ", ".join(unnamed)
    steps = [Path(n).stem for n in tracked if n.startswith("zipasr/bin/") and not n.startswith("zipasr/bin/_")]
    unlisted = [s for s in steps if not re.search(rf"\b{s}\b", doc)]
    assert not unlisted, "entry points missing from docs/architecture.md: " + ", ".join(unlisted)
