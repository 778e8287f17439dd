"""--source local stores a copy under a model id that the rest of vdeploy accepts: a directory named "my model"
becomes local/my-model, and `show`/`generate`/`serve` find it by the id the download printed and `ls` lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from download_testlib import write_tree
from typer.testing import CliRunner

from vdeploy.cli.main import app
from vdeploy.download import DownloadRequest, download_model, resolve_local_model
from vdeploy.download.local_source import LocalSource
from vdeploy.download.manifest import MANIFEST_NAME
from vdeploy.download.paths import model_id_part, model_store, validate_model_id


def _cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_directory_with_a_space_round_trips_from_download_to_show(checkpoint_files, tmp_path):
    source = write_tree(tmp_path / "my model", checkpoint_files)
    printed = _cli("download", "--source", "local", str(source)).stdout
    assert "local/my-model " in printed  # the summary names the id to use afterwards

    assert resolve_local_model("local/my-model") == (model_store() / "local" / "my-model").resolve()
    listed = json.loads(_cli("ls", "--json").stdout)["models"]
    assert [(m["name"], m["complete"]) for m in listed] == [("local/my-model", True)]
    shown = json.loads(_cli("show", "local/my-model", "--json").stdout)
    assert shown["architecture"] == json.loads(checkpoint_files["config.json"])["architectures"][0]


@pytest.mark.parametrize("name,expected", [
    ("my model", "my-model"),
    ("  Qwen 2.5 (7B) instruct!", "Qwen-2.5-7B-instruct-"),
    (".hidden", "hidden"),
    ("v1..2", "v1.2"),
    ("ckpt#1/step 5", "ckpt-1-step-5"),
])
def test_model_id_part_is_accepted_by_the_id_rule(name, expected):
    assert model_id_part(name) == expected
    assert validate_model_id(f"local/{model_id_part(name)}")


def test_model_id_part_keeps_valid_names_and_never_returns_nothing():
    for valid in ("Tiny-Llama", "DeepSeek-R1-Distill-Qwen-7B", "model.v2_final", "a--b", "x-"):
        assert model_id_part(valid) == valid  # an id that worked before still names the same directory
    unusable = model_id_part("模型")
    assert unusable == model_id_part("模型") and unusable != model_id_part("权重")  # deterministic, distinct
    assert validate_model_id(f"local/{unusable}")


def test_model_id_from_a_carried_manifest_cannot_leave_the_model_store(checkpoint_files, tmp_path):
    """The id in a source's manifest is data from another machine: `../../x` must not pick the target directory."""
    carried = tmp_path / "usb" / "m"
    assert download_model(DownloadRequest(str(write_tree(tmp_path / "m", checkpoint_files)), source="local",
                                          local_dir=carried)).ok
    manifest = json.loads((carried / MANIFEST_NAME).read_text())
    manifest["model_id"] = "../../../escaped"
    (carried / MANIFEST_NAME).write_text(json.dumps(manifest))

    model_id = LocalSource(carried).model_id()
    assert validate_model_id(model_id)
    result = download_model(DownloadRequest(str(carried), source="local"))
    assert result.ok and result.model_id == model_id
    assert Path(result.local_dir).resolve().is_relative_to(model_store().resolve())
