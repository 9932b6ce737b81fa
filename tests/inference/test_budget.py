import functools

import pytest

from devtools.tgi_simulator import TGISimulator, simulated_tokens
from inference.budget import (
    MESSAGE_OVERHEAD_TOKENS,
    PROMPT_OVERHEAD_TOKENS,
    TRUNCATION_MARK,
    PromptBudgetError,
    build_prompt,
)
from inference.client import (
    GenerationSettings,
    ModelInfo,
    StreamEnd,
    count_tokens,
    forget_endpoint,
    model_info,
    stream_chat,
)
from inference.prompts import Passage, Turn


def words(text: str) -> int:
    return len(simulated_tokens(text))


def passage(n: int, size: int = 40) -> Passage:
    return Passage(n=n, title=f"Doc {n}", url=f"https://docs.test/{n}", text=" ".join([f"fact{n}"] * size))


def limits(total: int, max_input: int | None = None) -> ModelInfo:
    return ModelInfo(model_id="m", max_input_tokens=max_input or total - 1, max_total_tokens=total)


def actual_tokens(messages: list[dict[str, str]]) -> int:
    return PROMPT_OVERHEAD_TOKENS + sum(MESSAGE_OVERHEAD_TOKENS + words(m["content"]) for m in messages)


def build(**overrides):
    arguments = {
        "persona": "You are Acme's assistant.",
        "passages": [passage(n) for n in range(1, 6)],
        "history": [],
        "question": "How do I install Acme?",
        "model_info": limits(1000),
        "count_tokens": words,
        "max_new_tokens": 200,
        **overrides,
    }
    return build_prompt(**arguments)


def test_it_adds_passages_by_rank_while_they_fit_leaving_room_for_the_answer():
    roomy = build(model_info=limits(4000))
    tight = build(model_info=limits(750))

    assert [p.n for p in roomy.passages_used] == [1, 2, 3, 4, 5]
    assert 0 < len(tight.passages_used) < 5
    assert [p.title for p in tight.passages_used] == [f"Doc {n}" for n in range(1, len(tight.passages_used) + 1)]
    assert tight.prompt_tokens <= 750 - 200
    assert actual_tokens(tight.messages) <= tight.prompt_tokens
    assert tight.messages[-1] == {"role": "user", "content": "How do I install Acme?"}


def test_it_respects_max_input_tokens_when_that_is_the_tighter_limit():
    built = build(model_info=limits(4000, max_input=700), max_new_tokens=100)
    assert built.prompt_tokens <= 700
    assert len(built.passages_used) < 5


def test_it_skips_a_passage_too_big_to_fit_and_renumbers_the_rest():
    huge = Passage(n=1, title="Huge", url="", text="word " * 2000)
    built = build(passages=[huge, passage(2)], model_info=limits(1000))
    assert [(p.n, p.title) for p in built.passages_used] == [(1, "Doc 2")]
    assert "<<<PASSAGE [1]>>>\ntitle: Doc 2" in built.messages[0]["content"]


def test_it_keeps_the_newest_history_turns_in_chronological_order():
    history = [Turn("user" if i % 2 == 0 else "assistant", f"turn {i} " + "blah " * 30) for i in range(20)]
    built = build(passages=[], history=history, model_info=limits(1200))

    kept = built.history_used
    assert 0 < len(kept) < 20
    assert kept == history[-len(kept) :]
    assert kept[0].role == "user"
    assert [m["content"] for m in built.messages[1:-1]] == [turn.text for turn in kept]
    assert actual_tokens(built.messages) <= built.prompt_tokens <= 1200 - 200


def test_it_drops_a_leading_assistant_turn_so_history_starts_with_the_user():
    history = [Turn("user", "a " * 300), Turn("assistant", "b " * 10), Turn("user", "c"), Turn("assistant", "d")]
    built = build(passages=[], history=history, model_info=limits(800))
    assert [turn.text for turn in built.history_used] == ["c", "d"]


def test_it_truncates_an_overlong_question_and_says_so():
    question = "Why " + "really " * 3000 + "?"
    built = build(question=question, model_info=limits(2000))

    asked = built.messages[-1]["content"]
    assert built.question_truncated is True
    assert asked.startswith("Why really") and asked.endswith(TRUNCATION_MARK)
    assert built.passages_used  # the question may not crowd out every passage
    assert actual_tokens(built.messages) <= built.prompt_tokens <= 2000 - 200


def test_it_refuses_a_persona_that_cannot_fit_at_all():
    with pytest.raises(PromptBudgetError):
        build(persona="Be nice. " * 1000, model_info=limits(1000))


def test_it_builds_a_prompt_that_tgi_accepts_at_the_limit():
    with TGISimulator() as sim:
        sim.configure(max_input_tokens=899, max_total_tokens=900, script_text="Run the installer [1].")
        forget_endpoint(sim.url)
        history = [Turn("user", "hello " * 50), Turn("assistant", "hi " * 50)] * 5
        built = build(
            passages=[passage(n, size=60) for n in range(1, 10)],
            history=history,
            model_info=model_info(sim.url),
            count_tokens=functools.partial(count_tokens, sim.url),
            max_new_tokens=300,
        )
        events = list(stream_chat(GenerationSettings(endpoint=sim.url, max_new_tokens=300), built.messages))

    assert isinstance(events[-1], StreamEnd) and events[-1].finish_reason == "stop"
    assert built.passages_used and len(built.passages_used) < 9
    server_count = sim.generation_requests()[-1]["prompt_tokens"]
    assert server_count <= built.prompt_tokens <= 900 - 300
