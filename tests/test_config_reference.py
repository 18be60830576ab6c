"""The documentation's configuration reference (docs/reference.md) is written from the schema, and a stale one is
caught; the README's links lead to files of the repository."""

import re
import subprocess
import sys

from cnnrun.config.reference import PAGE, page_markdown, write_page
from tests.conftest import PROJECT

REFERENCE = PAGE.read_text(encoding="utf-8")
CVAL_ROW = "| `cval` | `0` | The fill value for `fill_mode: constant`, as a pixel value (0–255). |"


def test_the_committed_reference_page_is_the_one_written_from_the_schema():
    assert PAGE == PROJECT / "docs" / "reference.md"
    assert REFERENCE == page_markdown(), "docs/reference.md is stale: run `python -m cnnrun.config.reference`"


def test_a_row_edited_by_hand_is_found_and_rewritten_from_the_schema(tmp_path):
    assert CVAL_ROW in REFERENCE
    drifted = tmp_path / "reference.md"
    drifted.write_text(REFERENCE.replace(CVAL_ROW, "| `cval` | `0` | The fill value for `fill_mode: constant`. |"),
                       encoding="utf-8")
    assert write_page(drifted) is True
    assert drifted.read_text(encoding="utf-8") == REFERENCE
    assert write_page(drifted) is False  # a current page is left alone: the docs build does not touch it


def table_keys(title: str) -> list[str]:
    """The keys in the rows of the reference's table under the heading `## title`."""
    keys: list[str] = []
    for line in REFERENCE.split(f"\n## {title}\n", 1)[1].splitlines():
        if line.startswith("| `"):
            keys.append(line.split("`")[1])
        elif keys:
            break
    return sorted(keys)


def test_every_kind_of_dataset_has_its_own_table_with_its_own_keys():
    titles = ["`dataset` with `name: shapes`", "`dataset` with `name: npz`", "`dataset` with `name: image_folder`",
              "`dataset` with `name: csv`", "`dataset` with `name: fashion_mnist, mnist, cifar10, cifar100`"]
    keys = {title: table_keys(title) for title in titles}
    assert keys == {
        "`dataset` with `name: shapes`": ["channels", "image_size", "num_classes", "num_samples", "test_samples"],
        "`dataset` with `name: npz`": ["path"],
        "`dataset` with `name: image_folder`": ["cache", "color_mode", "image_size", "on_bad_file", "path",
                                                 "stratify"],
        "`dataset` with `name: csv`": ["cache", "color_mode", "image_size", "label_column", "label_separator",
                                       "on_bad_file", "path", "path_column", "split_column", "stratify",
                                       "target_columns", "target_normalize"],
        "`dataset` with `name: fashion_mnist, mnist, cifar10, cifar100`": ["cache", "data_dir"],
    }


def test_the_check_command_says_whether_the_page_is_current():
    result = subprocess.run([sys.executable, "-m", "cnnrun.config.reference", "--check"], cwd=PROJECT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_docs_build_writes_the_reference_first():
    """mkdocs.yml names the module as a hook, and the module has the hook MkDocs calls before a build."""
    from cnnrun.config import reference

    assert re.search(r"^hooks:\n  - cnnrun/config/reference\.py$", (PROJECT / "mkdocs.yml").read_text(), re.M)
    assert callable(reference.on_pre_build)


def test_the_readmes_links_lead_to_files_of_the_repository():
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    assert "docs/reference.md" in targets
    for target in targets:
        assert not target.startswith(("http:", "https:", "/", "..")), f"README: {target} points outside the repository"
        assert (PROJECT / target).is_file(), f"README: the link {target} leads to no file"
