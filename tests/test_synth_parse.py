"""Parsing of model output: the formats small models produce, and never a crash."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsynth.synth.parse import (MalformedOutput, clean_question, is_none_reply, parse_answer,
                                   parse_questions, parse_topics)


def test_q_prefixed_lines():
    text = "Q: What does the assert statement do?\nQ: How is __debug__ used by assert?\n"
    assert parse_questions(text) == ["What does the assert statement do?", "How is __debug__ used by assert?"]


def test_numbered_bold_tagged_and_preamble():
    text = ("Sure! Here are the questions:\n1. **What is a list comprehension?**\n"
            "2) Q2 (original): Why are tuples immutable in Python? They are.\n"
            "- [new] How does slicing work on lists?\nThanks!")
    assert parse_questions(text) == ["What is a list comprehension?", "Why are tuples immutable in Python?",
                                     "How does slicing work on lists?"]


def test_question_without_mark_and_inline_items():
    assert parse_questions("Q: Explain how the with statement manages context") == [
        "Explain how the with statement manages context?"]
    assert parse_questions("Q: What is a decorator in Python? Q1: How are generators created in Python?") == [
        "What is a decorator in Python?", "How are generators created in Python?"]


def test_duplicates_limit_and_short_lines():
    text = "Q: What is a set in Python?\nQ: what is a set in python?\nQ: Why?\nQ: How do dict views behave?"
    assert parse_questions(text) == ["What is a set in Python?", "How do dict views behave?"]
    assert parse_questions(text, limit=1) == ["What is a set in Python?"]


@pytest.mark.parametrize("text,reason", [("", "empty_output"), ("   \n", "empty_output"),
                                         ("The text is about lists.", "no_questions"),
                                         ("I'm sorry, I cannot help with that?", "no_questions")])
def test_no_questions_is_a_reason(text, reason):
    with pytest.raises(MalformedOutput) as e:
        parse_questions(text)
    assert e.value.reason == reason


def test_none_reply():
    assert is_none_reply("NONE") and is_none_reply("**None**.") and is_none_reply("Unsuitable: no facts")
    assert not is_none_reply("Q: Nonetheless, what is a list?")


def test_topics_standard_and_variants():
    text = ("Topic: Assert statements\nConcepts: assertion, __debug__, AssertionError, expression\n\n"
            "**Topic 2:** Optimisation\n- optimization flag\n- bytecode\n")
    assert parse_topics(text) == [("Assert statements", ["assertion", "__debug__", "AssertionError", "expression"]),
                                  ("Optimisation", ["optimization flag", "bytecode"])]
    assert parse_topics("Topic: Lists, Concepts: append, pop, and sort") == [("Lists", ["append", "pop", "sort"])]


def test_topics_limits_and_failures():
    text = "\n".join(f"Topic: t{i}\nConcepts: " + ", ".join(f"c{i}{j}" for j in range(30)) for i in range(8))
    out = parse_topics(text)
    assert len(out) == 5 and all(len(cs) == 20 for _, cs in out)
    for bad in ("", "Topic: lonely", "The text is about lists.", "Topic: <topic>\nTerms: <term>, term"):
        with pytest.raises(MalformedOutput):
            parse_topics(bad)


def test_answer():
    assert parse_answer("Answer:  It raises   AssertionError.") == "It raises AssertionError."
    for text, reason in (("", "empty_answer"), ("A: ...", "empty_answer"),
                         ("I'm sorry, but I cannot answer that.", "refusal"), ("word " * 300, "too_long")):
        with pytest.raises(MalformedOutput) as e:
            parse_answer(text)
        assert e.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parsers_never_raise_other_errors(text):
    for fn in (parse_questions, parse_topics, parse_answer):
        try:
            out = fn(text)
        except MalformedOutput:
            continue
        assert out  # a result is never empty
    q = clean_question(text)
    assert q is None or q.endswith("?")


def test_topics_as_markdown_headers():
    text = ("The text is about comparisons.\n\nThe main topics covered are:\n\n1. **Comparisons**:\n"
            "   - chained comparison\n   - \"a op1 b\"\n2. **Identity**: is, is not, id\n## Membership\n- in operator\n")
    assert parse_topics(text) == [("Comparisons", ["chained comparison", "a op1 b"]),
                                  ("Identity", ["is", "is not", "id"]), ("Membership", ["in operator"])]


def test_topics_in_the_shape_small_models_write():
    text = ("The main topics of the text are:\n\n1. Identifiers\n2. Naming and binding\n\n"
            "The key terms are:\n\n- identifier\n- \"continue\" statement\n- keyword\n")
    terms = ["identifier", "continue statement", "keyword"]
    assert parse_topics(text) == [("Identifiers", terms), ("Naming and binding", terms)]
    assert parse_topics("The key terms are:\n- import\n- as\n- as") == [("", ["import", "as"])]
    assert parse_topics("Concepts: a, b") == [("", ["a", "b"])]


def test_question_cleanup_of_echoes_and_truncation():
    text = ("A student could ask:\n* What questions could a student ask about the text above?\n"
            "* Question: \"What if the input list is empty?\"\n2. What is the purpose of the")
    assert parse_questions(text, truncated=True) == ["What if the input list is empty?"]
    assert parse_questions(text) == ["What if the input list is empty?", "What is the purpose of the?"]
