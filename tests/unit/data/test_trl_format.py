"""The TRL-format normaliser: every field shape of TRL's "Dataset formats and types" read as
text messages, and each shape it cannot read named."""

import pytest

from value_drifts.data.trl_format import (
    Field,
    FormatError,
    Message,
    content_text,
    dataset_type,
    describe,
    prompt_message,
    read_field,
    response_message,
    shared_prefix_length,
    split_implicit_prompt,
    text_messages,
)


def test_a_string_is_one_message_of_the_fields_role():
    assert read_field("The sky is", "user") == Field((Message("user", "The sky is"),), False)
    assert read_field(" blue.", "assistant") == Field((Message("assistant", " blue."),), False)
    assert read_field(None, "user") is None


def test_a_message_list_is_a_conversation():
    field = read_field([{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Sky?"},
                        {"role": "assistant", "content": "Blue."},
                        {"role": "user", "content": "Sure?"}], "user")
    assert field.conversational
    assert prompt_message(field) == Message("user", "Sky?")  # the first user turn
    assert response_message(field) == Message("user", "Sure?")  # the last message
    assert read_field([], "assistant") == Field((), True)
    assert response_message(Field((), True)) is None and prompt_message(Field((), True)) is None


def test_content_parts_give_their_text_and_name_what_they_leave_out():
    parts = [{"type": "text", "text": "Part one."}, {"type": "image"},
             {"type": "text", "text": "Part two."}, {"type": "image_url", "image_url": {}}]
    assert content_text(parts) == ("Part one.\nPart two.", ("image", "image_url"))
    # Rows from Arrow hold every key of every part, the others null.
    assert content_text([{"type": "text", "text": "A", "image": None},
                         {"type": "image", "text": None, "image": "x.png"}]) == ("A", ("image",))
    assert content_text([{"type": "image"}]) == ("", ("image",))
    assert content_text(None) == ("", ())
    field = read_field([{"role": "assistant", "content": parts}], "assistant")
    assert response_message(field) == Message(
        "assistant", "Part one.\nPart two.", ("image", "image_url"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"type": "text", "text": "x"}, ("content is a dict with keys ['text', 'type'], "
                                         "not a string or a list of parts")),
        (["a", "b"], "content is a list of str, not parts with a 'type'"),
        ([{"text": "no type"}], "content is a list of dict, not parts with a 'type'"),
        ([{"type": "text", "text": None}], "a text part whose 'text' is not a string"),
        (7, "content is an int, not a string or a list of parts"),
    ],
)
def test_unreadable_content_is_named(content, message):
    with pytest.raises(FormatError) as error:
        content_text(content)
    assert str(error.value) == message


def test_sharegpt_from_value_messages_read_as_trl_converts_them():
    field = read_field([{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}],
                       "user")
    assert field.messages == (Message("user", "Hi?"), Message("assistant", "Hello."))
    # Arrow rows of a column mixing both shapes hold both key pairs, one of them null.
    mixed = read_field([{"role": None, "content": None, "from": "human", "value": "Q"}], "user")
    assert mixed.messages == (Message("user", "Q"),)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"text": "yes"}, "a dict with keys ['text'], not a string or a message list"),
        ({"role": "assistant", "content": "one message, not a list"},
         "a dict with keys ['content', 'role'], not a string or a message list"),
        (["yes"], "a list of str, not a string or a message list"),
        ([{"role": "user", "content": "a"}, "b"],
         "a list of dict and str, not a string or a message list"),
        ([{"content": "no role"}], "a message without a role (keys ['content'])"),
        (3, "an int, not a string or a message list"),
        (1.5, "a float, not a string or a message list"),
        (True, "a bool, not a string or a message list"),
        (b"bytes", "a bytes, not a string or a message list"),
        ('[{"role": "assistant", "content": "A."}]',
         "a string holding a serialised message list, not a list"),
        ("[{'role': 'assistant', 'content': 'A.'}]",
         "a string holding a serialised message list, not a list"),
        ('[{"type": "text", "text": "A."}]',
         "a string holding a serialised message list, not a list"),
    ],
)
def test_values_in_no_format_are_named(value, message):
    with pytest.raises(FormatError) as error:
        read_field(value, "assistant")
    assert str(error.value) == message


def test_a_string_that_merely_starts_with_a_bracket_is_text():
    assert read_field("[1] Yes, see the footnote.", "assistant").messages[0].content == (
        "[1] Yes, see the footnote.")


def test_describe():
    assert describe({"b": 1, "a": 2}) == "a dict with keys ['a', 'b']"
    assert describe([]) == "an empty list"
    assert describe("x") == "a string"
    assert describe(None) == "null"


def test_implicit_prompt_of_conversations_is_the_shared_turns():
    user = {"role": "user", "content": "What color is the sky?"}
    chosen = read_field([user, {"role": "assistant", "content": "It is blue."}], "assistant")
    rejected = read_field([user, {"role": "assistant", "content": "It is green."}], "assistant")
    prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
    assert prompt == Field((Message("user", "What color is the sky?"),), True)
    assert chosen == Field((Message("assistant", "It is blue."),), True)
    assert rejected == Field((Message("assistant", "It is green."),), True)


def test_implicit_prompt_of_strings_is_the_shared_start_less_its_space():
    prompt, chosen, rejected = split_implicit_prompt(
        read_field("The sky is blue.", "assistant"), read_field("The sky is green.", "assistant"))
    assert (prompt.messages[0], chosen.messages[0].content, rejected.messages[0].content) == (
        Message("user", "The sky is"), " blue.", " green.")
    nothing, chosen, _ = split_implicit_prompt(read_field("Yes.", "assistant"),
                                               read_field("No.", "assistant"))
    assert nothing.messages[0].content == "" and chosen.messages[0].content == "Yes."


def test_shared_prefix_length_follows_trl():
    assert shared_prefix_length("The sky is blue.", "The sky is green.") == 10
    assert shared_prefix_length("ab", "ab") == 1  # never all of the shorter one
    assert shared_prefix_length("Yes ", "No ") == 0  # TRL would give -1 here
    assert shared_prefix_length((1, 2, 3), (1, 2, 4)) == 2
    assert shared_prefix_length((), ()) == 0


def test_implicit_prompt_needs_two_fields_of_one_format():
    with pytest.raises(FormatError, match="not both strings or both message lists"):
        split_implicit_prompt(read_field("a", "assistant"),
                              read_field([{"role": "assistant", "content": "b"}], "assistant"))


def test_text_messages_for_training_lose_nothing_silently():
    assert text_messages([{"content": [{"type": "text", "text": "Hi"}], "role": "user"}]) == [
        {"role": "user", "content": "Hi"}]
    assert text_messages("Sure.") == [{"role": "assistant", "content": "Sure."}]
    with pytest.raises(FormatError, match=r"^non-text content \(audio, image\)$"):
        text_messages([{"role": "user", "content": [{"type": "image"}, {"type": "audio"},
                                                     {"type": "text", "text": "What?"}]}])
    with pytest.raises(FormatError, match="^a null field$"):
        text_messages(None)


@pytest.mark.parametrize(
    ("columns", "kind"),
    [
        (["prompt", "chosen", "rejected", "score"], "preference"),
        (["chosen", "rejected"], "preference with implicit prompt"),
        (["prompt", "completion", "label"], "unpaired preference"),
        (["prompt", "completions", "labels"], "stepwise supervision"),
        (["prompt", "completion"], "prompt-completion"),
        (["prompt"], "prompt-only"),
        (["messages"], "language modeling"),
        (["text"], "language modeling"),
        (["question", "answer"], None),
    ],
)
def test_dataset_type_by_columns(columns, kind):
    assert dataset_type(columns) == kind


def test_the_preference_loader_reads_content_parts_and_counts_what_it_cannot_train_on():
    from value_drifts.data.preference_pairs import convert_pairs, ultrafeedback_pair

    def turn(role, content):
        return {"role": role, "content": content}

    parts = [turn("user", [{"type": "text", "text": "Why?"}]),
             turn("assistant", [{"type": "text", "text": "Because."}])]
    image = [turn("user", [{"type": "image"}, {"type": "text", "text": "This?"}]),
             turn("assistant", "Yes.")]
    rows = [{"chosen": parts, "rejected": [parts[0], turn("assistant", "No.")]},
            {"chosen": image, "rejected": [image[0], turn("assistant", "No.")]},
            {"chosen": "Because.", "rejected": "No."}]
    kept, rejected = convert_pairs(rows, ultrafeedback_pair)
    assert kept == [{"prompt": [{"role": "user", "content": "Why?"}],
                     "chosen": [{"role": "assistant", "content": "Because."}],
                     "rejected": [{"role": "assistant", "content": "No."}]}]
    assert rejected == {"malformed row: non-text content (image)": 1,
                        "prompt does not end with a user turn": 1}
