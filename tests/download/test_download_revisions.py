"""A model directory downloaded again after the repository changed its file set (a re-sharded release, or another
--revision into the same default directory) holds that revision's files only: a file an earlier run downloaded that
the new listing no longer has must not stay behind, or the old index keeps loading the old shards."""

from __future__ import annotations

import pytest
from download_testlib import MODEL_ID, run_download

from vdeploy.checkpoint.index import INDEX_FILE, discover_shards
from vdeploy.download.manifest import load_manifest


@pytest.fixture(scope="module")
def single_file_release(tmp_path_factory) -> dict[str, bytes]:
    """The same model re-published as one model.safetensors (other weights, no index)."""
    from vdeploy.checkpoint.synthetic import write_tiny_checkpoint

    root = write_tiny_checkpoint(tmp_path_factory.mktemp("single"), "llama", num_shards=1, seed=1,
                                 config_overrides={"vocab_size": 4096})
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("source", ["huggingface", "modelscope"])
def test_files_the_new_listing_dropped_are_removed(hub, checkpoint_files, single_file_release, tmp_path, source):
    target = tmp_path / "d"
    assert run_download(source, hub.url, target).ok
    assert (target / INDEX_FILE).is_file()

    hub.add_repo(MODEL_ID, single_file_release)  # main now points at the re-published commit
    result = run_download(source, hub.url, target)
    assert result.ok, result.to_dict()
    on_disk = {p.relative_to(target).as_posix() for p in target.rglob("*")
               if p.is_file() and not p.name.startswith(".vdeploy") and ".cache" not in p.parts}
    assert on_disk == set(single_file_release)
    assert set(load_manifest(target).files) == set(single_file_release)
    shard_map, _ = discover_shards(target)
    assert shard_map.index_file is None and shard_map.files == ["model.safetensors"]


def test_an_include_subset_keeps_the_other_files(hub, checkpoint_files, tmp_path):
    """Files outside --include are still in the listing: a subset run leaves them alone."""
    target = tmp_path / "d"
    assert run_download("huggingface", hub.url, target).ok
    assert run_download("huggingface", hub.url, target, include=["*.json"]).ok
    for name in checkpoint_files:
        assert (target / name).is_file(), name


def test_files_we_did_not_download_are_left_alone(hub, single_file_release, tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "my-notes.txt").write_text("mine")
    hub.add_repo(MODEL_ID, single_file_release)
    assert run_download("huggingface", hub.url, target).ok
    assert (target / "my-notes.txt").read_text() == "mine"
