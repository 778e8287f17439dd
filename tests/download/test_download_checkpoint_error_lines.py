"""The checkpoint-check errors in a download summary name the tensor as well as the file: the inspector's messages
leave both to its table's columns, so "the config implies [64] BF16 but no shard holds it" alone named nothing."""

from __future__ import annotations

from download_testlib import shard_names

from vdeploy.download import verify_directory


def test_checkpoint_errors_name_file_and_tensor(tmp_path, checkpoint_files):
    lost = shard_names(checkpoint_files)[0]
    for name, data in checkpoint_files.items():
        if name != lost:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
    result = verify_directory(tmp_path)
    assert not result.ok and result.checkpoint.ran
    errors = result.checkpoint.errors
    assert any(e.startswith(f"{lost}: ") for e in errors)  # a file-level finding: the file
    embed = [e for e in errors if e.startswith("model.embed_tokens.weight: ")]  # in the lost shard
    assert len(embed) == 1 and "no shard holds it" in embed[0]
