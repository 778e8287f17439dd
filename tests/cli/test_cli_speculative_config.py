"""--speculative-config in vLLM's JSON shape on serve / generate / bench: parsed once (vllm_compat), unknown keys,
bad values and non-JSON refused before anything loads, and `vdeploy bench` prints acceptance, mean accepted length and
draft time."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vdeploy.cli.main import app
from vdeploy.cli.vllm_compat import speculative_flags
from vdeploy.errors import ConfigError


def test_speculative_flags_accept_both_methods_and_refuse_the_rest():
    assert speculative_flags('{"method": "mtp", "num_speculative_tokens": 2}') == {
        "speculative_method": "mtp", "num_speculative_tokens": 2}
    assert speculative_flags('{"method": "ngram"}') == {"speculative_method": "ngram"}  # only the keys given
    assert speculative_flags(None) == {}
    with pytest.raises(ConfigError, match="unknown key"):
        speculative_flags('{"method": "mtp", "draft_model": "x"}')
    with pytest.raises(ConfigError, match="not JSON"):
        speculative_flags("{method: mtp}")


@pytest.mark.parametrize("spec, error", [
    ('{"method": "mtp", "k": 1}', "unknown key(s) k"),
    ('{"method": "ngram", "num_speculative_tokens": 0}', "num_speculative_tokens"),  # a value, refused as early
])
@pytest.mark.parametrize("command", [["generate", "-p", "hi"], ["bench"], ["serve"]])
def test_malformed_speculative_config_fails_before_loading(command, spec, error, tmp_path):
    done = CliRunner().invoke(app, [*command, str(tmp_path), "--speculative-config", spec],
                              env={"COLUMNS": "200", "NO_COLOR": "1", "VDEPLOY_HOME": str(tmp_path)})
    assert done.exit_code != 0
    assert error in done.output or error in str(done.exception)


def test_bench_report_prints_the_speculation_line(capsys):
    from vdeploy.cli.bench import _print_report

    extra = {"spec_draft_tokens": 100, "spec_accepted_tokens": 80, "spec_acceptance_rate": 0.8,
             "spec_mean_accepted_length": 1.8, "spec_draft_seconds": 0.25}
    result = {"backend": "vdeploy", "requests_per_s": 1.0, "input_tokens_per_s": 1.0, "output_tokens_per_s": 1.0,
              "total_tokens_per_s": 2.0, "elapsed_s": 1.0, "startup_s": 1.0, "extra": extra}
    _print_report({"model": "m", "device": "cpu", "results": [result], "git_revision": "x", "date": "d",
                   "workload": {"num_prompts": 1, "input_len": 1, "output_len": 1, "random_range_ratio": 0}})
    out = " ".join(capsys.readouterr().out.split())  # the console wraps at its width
    assert "acceptance 80.0%" in out and "mean accepted length 1.8" in out and "drafting 0.25 s" in out


def test_profiles_set_speculation_and_refuse_unknown_methods():
    from vdeploy.profile_schema import profile_from_dict
    from vdeploy.profiles import resolve_engine_config

    data = {"name": "r1-mtp", "description": "R1 with one MTP draft",
            "engine": {"speculative_method": "mtp", "num_speculative_tokens": 1}}
    config, provenance = resolve_engine_config("/m", profile_from_dict(data, "r1-mtp.yaml"), {}, {})
    assert config.speculative.uses_mtp and config.speculative.num_speculative_tokens == 1
    assert provenance["speculative_method"] == "profile:r1-mtp"
    # a flag beats the profile, as for every setting
    config, _ = resolve_engine_config("/m", profile_from_dict(data, "r1-mtp.yaml"), {}, {"speculative_method": "ngram"})
    assert config.speculative.method == "ngram"
    with pytest.raises(ConfigError, match="unknown method 'eagle'"):
        profile_from_dict({**data, "engine": {"speculative_method": "eagle"}}, "bad.yaml")
