"""A request stream whose consumer fell behind hands over the queued outputs as one, with their deltas joined;
an error queued behind outputs still comes after them, and the stream closes as finished or aborted exactly once."""

from __future__ import annotations

import asyncio

import pytest

from vdeploy.engine.outputs import CompletionOutput, RequestOutput
from vdeploy.engine.streams import RequestStream, joined, stream_outputs


def output(step: int, *samples: tuple[int, str], finished: bool = False) -> RequestOutput:
    """The request's output after `step` tokens per sample; each sample named made one token (text) this step."""
    completions = [CompletionOutput(index=i, text=f"<{i}:{step}>", token_ids=list(range(step)), delta_text=text,
                                    delta_token_ids=[100 * i + step], finish_reason="length" if finished else None)
                   for i, text in samples]
    return RequestOutput("r", [1, 2], completions, finished)


def test_joined_keeps_the_later_state_and_both_deltas_per_sample():
    both = joined(output(1, (0, "a"), (1, "x")), output(2, (1, "y")))
    assert [c.index for c in both.outputs] == [0, 1]
    first, second = both.outputs
    assert (first.text, first.delta_text, first.delta_token_ids) == ("<0:1>", "a", [1])  # only the earlier named it
    assert (second.text, second.delta_text, second.delta_token_ids) == ("<1:2>", "xy", [101, 102])


def run_stream(items: list, take: int | None = None) -> tuple[list, BaseException | None, list[bool]]:
    """Queue `items` before the consumer starts (it fell behind), then read (at most `take` outputs)."""

    async def main():
        stream = RequestStream(asyncio.get_running_loop(), asyncio.Queue())
        for item in items:
            stream.queue.put_nowait(item)
        closed: list[bool] = []
        got, error = [], None
        outputs = stream_outputs(stream, closed.append)
        try:
            async for out in outputs:
                got.append(out)
                if take is not None and len(got) == take:
                    break
        except RuntimeError as e:
            error = e
        await outputs.aclose()
        return got, error, closed

    return asyncio.run(main())


def test_a_backlog_comes_out_as_one_output_up_to_the_finished_one():
    got, error, closed = run_stream([output(1, (0, "a")), output(2, (0, "b")), output(3, (0, "c"), finished=True)])
    assert error is None and closed == [True]
    assert len(got) == 1 and got[0].finished
    assert (got[0].outputs[0].delta_text, got[0].outputs[0].delta_token_ids) == ("abc", [1, 2, 3])


def test_an_error_behind_outputs_is_raised_after_them_and_aborts_nothing():
    got, error, closed = run_stream([output(1, (0, "a")), output(2, (0, "b")), RuntimeError("engine died")])
    assert [o.outputs[0].delta_text for o in got] == ["ab"]
    assert str(error) == "engine died" and closed == [True]


def test_a_consumer_that_leaves_early_aborts_the_request():
    got, error, closed = run_stream([output(1, (0, "a"))], take=1)
    assert len(got) == 1 and error is None and closed == [False]


@pytest.mark.parametrize("n", [1, 3])
def test_a_keeping_up_consumer_gets_every_output(n):
    async def main():
        stream = RequestStream(asyncio.get_running_loop(), asyncio.Queue())
        got = []
        outputs = stream_outputs(stream, lambda finished: None)
        for step in range(1, 4):
            stream.queue.put_nowait(output(step, *((i, str(step)) for i in range(n)), finished=step == 3))
            got.append(await anext(outputs))
        return got

    got = asyncio.run(main())
    assert [[c.delta_text for c in o.outputs] for o in got] == [[str(s)] * n for s in range(1, 4)]


def test_joined_deltas_carry_both_steps_text_ids_and_logprobs():
    from vdeploy.engine.outputs import OutputKind, TokenLogprobs

    lp = [TokenLogprobs(5, -0.1, []), TokenLogprobs(6, -0.2, [])]
    a = RequestOutput("r", [1], [CompletionOutput(0, "a", [5], "a", [5], lp[:1])], False)
    b = RequestOutput("r", [1], [CompletionOutput(0, "b", [6], "b", [6], lp[1:], "length")], True)
    c = joined(a, b, OutputKind.DELTA).outputs[0]
    assert (c.text, c.token_ids, c.delta_text, c.delta_token_ids) == ("ab", [5, 6], "ab", [5, 6])
    assert c.logprobs == lp and c.finish_reason == "length"


def test_joined_outputs_keep_the_prompt_logprobs_of_the_earlier_one():
    from vdeploy.engine.outputs import OutputKind, TokenLogprobs

    scored = [None, TokenLogprobs(2, -0.3, [], rank=1)]
    a = RequestOutput("r", [1, 2], [CompletionOutput(0, "a", [5], "a", [5])], False, prompt_logprobs=scored)
    b = RequestOutput("r", [1, 2], [CompletionOutput(0, "b", [6], "b", [6], None, "length")], True)
    assert joined(a, b, OutputKind.DELTA).prompt_logprobs == scored
