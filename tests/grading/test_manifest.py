"""The manifest is refused with one line naming the file, the key and the problem."""
from __future__ import annotations

from pathlib import Path

import pytest

from grader.errors import BadInput
from grader.manifest import load_manifest, matches
from tests.conftest import TOY_HOME

TOY_MANIFEST = TOY_HOME / "exercises" / "toy" / "exercise.toml"


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "toy"
    folder.mkdir()
    text = TOY_MANIFEST.read_text()
    assert old in text, old
    (folder / "exercise.toml").write_text(text.replace(old, new, 1))
    return folder / "exercise.toml"


def test_toy_manifest_loads() -> None:
    manifest = load_manifest(TOY_MANIFEST)
    assert manifest.id == "toy"
    assert manifest.total_points == 10
    assert manifest.limits.test_timeout_s == 4
    assert [c.id for c in manifest.checks] == ["add-public", "add-edge", "mean"]


@pytest.mark.parametrize("old,new,key,problem", [
    ('level = "junior"', 'level = "guru"', "level", "junior"),
    ("points = 3", 'points = "three"', "checks.1.points", "number"),
    ("points = 3", "points = -1", "checks.1.points", "greater than 0"),
    ('visibility = "hidden"', 'visibility = "secret"', "checks.1.visibility", "public"),
    ("band = [75, 85]", "band = [85, 75]", "calibration.0.band", "low <= high"),
    ('device = "cpu"', 'device = "cpu"\ncolour = "red"', "colour", "Extra inputs"),
    ('tests = ["hidden/test_mean.py"]', 'tests = ["public/test_mean.py"]', "checks.2", "not under hidden/"),
    ('id = "mean"', 'id = "add-edge"', "(top level)", "duplicate check id: add-edge"),
    ('required_files = ["calc.py"]', 'required_files = ["../calc.py"]', "(top level)", "must be relative"),
    ('id = "toy"', 'id = "other"', "id", "folder name"),
    ('title = "Toy arithmetic"', 'title = "Toy', "", "not valid TOML"),
    ('checks = ["add-edge"]', 'checks = ["add-edges"]', "(top level)", "names check 'add-edges', which is not a check"),
    ('checks = ["add-edge"]', 'checks = []', "calibration.0.checks", "at least 1 item"),
    ('checks = ["add-edge"]', '', "calibration.0.checks", "Field required"),
])
def test_wrong_manifest_is_one_clear_line(tmp_path: Path, old: str, new: str, key: str, problem: str) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(BadInput) as caught:
        load_manifest(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert f"key {key}:" in message if key else True
    assert problem in message


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="manifest not found"):
        load_manifest(tmp_path / "exercise.toml")


def test_node_id_prefixes_match_whole_names_only() -> None:
    assert matches("hidden/test_a.py", "hidden/test_a.py::test_x")
    assert matches("hidden/test_a.py::test_x", "hidden/test_a.py::test_x[1-2]")
    assert matches("hidden/test_a.py::test_x", "hidden/test_a.py::test_x")
    assert not matches("hidden/test_a.py::test_x", "hidden/test_a.py::test_xy")
    assert not matches("hidden/test_a", "hidden/test_a.py::test_x")


def test_every_bundled_manifest_loads() -> None:
    for manifest in (Path(__file__).parents[2] / "exercises").glob("*/exercise.toml"):
        assert load_manifest(manifest).id == manifest.parent.name


def test_unknown_check_kind_is_named(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'id = "mean"', 'id = "mean"\nkind = "vibes"')
    with pytest.raises(BadInput, match=r"key checks.2: kind must be one of pytest, outputs, model, latency"):
        load_manifest(path)


def test_outputs_and_latency_checks_need_a_spec(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'tests = ["hidden/test_mean.py"]', 'kind = "outputs"')
    with pytest.raises(BadInput, match="check mean of kind outputs needs the top-level key spec"):
        load_manifest(path)
    (tmp_path / "toy").rename(tmp_path / "first")
    path = _broken(tmp_path, 'tests = ["hidden/test_mean.py"]', 'kind = "latency"\nrequires = ["nope"]')
    text = path.read_text().replace('required_files', 'spec = "tests/spec.py"\nrequired_files')
    path.write_text(text)
    with pytest.raises(BadInput, match="check mean requires 'nope', which is not another check"):
        load_manifest(path)


def test_a_check_may_require_only_checks_graded_before_or_with_it(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'tests = ["hidden/test_mean.py"]',
                   'tests = ["hidden/test_mean.py"]\nrequires = ["add-edge"]')
    assert load_manifest(path).checks[2].requires == ["add-edge"]  # pytest checks share one run
    (tmp_path / "toy").rename(tmp_path / "first")
    path = _broken(tmp_path, 'tests = ["hidden/test_mean.py"]', 'tests = ["hidden/test_mean.py"]\nrequires = ["lat"]')
    path.write_text(path.read_text().replace('required_files', 'spec = "tests/spec.py"\nrequired_files')
                    + '\n[[checks]]\nid = "lat"\ntitle = "t"\nkind = "latency"\nvisibility = "public"\npoints = 1\n')
    with pytest.raises(BadInput, match="check mean requires 'lat', a latency check, which is graded after pytest"):
        load_manifest(path)
