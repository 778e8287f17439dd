"""vLLM's prompt-shaping extensions: `truncate_prompt_tokens` keeps only a prompt's last k tokens (completions and
chat), `continue_final_message` makes the answer continue the final assistant message (a prefilled answer)
instead of opening a new turn."""


def test_truncate_prompt_tokens_keeps_the_last_k(client, engine):
    ids = engine.tokenizer.encode("one two three four five six seven eight")
    cut = client.completions.create(model="tiny", prompt=ids, max_tokens=3, extra_body={"truncate_prompt_tokens": 4})
    tail = client.completions.create(model="tiny", prompt=ids[-4:], max_tokens=3)
    assert cut.usage.prompt_tokens == 4 and cut.choices[0].text == tail.choices[0].text
    echoed = client.completions.create(model="tiny", prompt="one two three four five six", max_tokens=1, echo=True,
                                       extra_body={"truncate_prompt_tokens": 2})
    kept = engine.tokenizer.decode(engine.tokenizer.encode("one two three four five six")[-2:])
    assert echoed.choices[0].text.startswith(kept) and not echoed.choices[0].text.startswith("one")
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello there"}],
                                          max_tokens=1, extra_body={"truncate_prompt_tokens": 3})
    assert chat.usage.prompt_tokens == 3


def test_continue_final_message_continues_the_prefilled_answer(http, client):
    prefill = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sure, the answer"}]
    opened = http.post("/tokenize", json={"messages": prefill, "add_generation_prompt": False}).json()
    reply = client.chat.completions.create(model="tiny", messages=prefill, max_tokens=1, extra_body={
        "continue_final_message": True, "add_generation_prompt": False})
    # the final turn is left open: the template's end-of-turn after "Sure, the answer" is not in the prompt
    assert reply.usage.prompt_tokens < opened["count"]
    # continuing opens no new turn whatever add_generation_prompt says (vLLM refuses the pair; nothing is lost here)
    both = client.chat.completions.create(model="tiny", messages=prefill, max_tokens=1,
                                          extra_body={"continue_final_message": True})
    assert both.usage.prompt_tokens == reply.usage.prompt_tokens
