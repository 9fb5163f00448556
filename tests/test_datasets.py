"""Issue 14, part 2.

The LLMsKnow datasets, their graders and class-blind locators, on written examples.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from halluscan.data import load_dataset
from halluscan.data.llmsknow import FILES, person_aliases
from halluscan.engine.decode import find_stop
from halluscan.errors import HalluscanError
from halluscan.grade import ChoiceGrader, Grader, LabelGrader, NumberGrader, grader_for
from halluscan.grade.kinds import numbers
from halluscan.records import Dataset, Generation, Question

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmsknow"


def gen(text: str) -> Generation:
    return Generation("q", (1,), (2,), text, (0,), "sentence")


def grade(grader: Grader, q: Question, text: str) -> tuple[bool, str | None, str]:
    g = grader.grade(q, gen(text))
    return g.correct, g.exact_text, g.locator


def test_movie_answers_with_titles_and_initials():
    assert person_aliases("Dr. John Smith") == ("Dr. John Smith", "John Smith")
    assert "JK Simmons" in person_aliases("J.K. Simmons")
    q = Question(
        "m",
        "Who acted as Fletcher in the movie 'Whiplash'?",
        "J.K. Simmons",
        person_aliases("J.K. Simmons"),
    )
    ds = Dataset("movies", (q,), "x", {"movie_actor": q.aliases}, kind="alias")
    g = grader_for(ds)
    for text in ("J. K. Simmons played Fletcher.", "JK Simmons.", "It was J.K. Simmons."):
        assert grade(g, q, text)[0], text
    assert not grade(g, q, "Miles Teller played him.")[0]
    # the class-blind locator keeps a wrong name with an initial or a title whole
    assert (
        grade(g, q, "The movie's director, Michael B. Jackson, played him.")[1]
        == "Michael B. Jackson"
    )
    assert grade(g, q, "Dr. John Smith played Fletcher.")[1] == "Dr. John Smith"
    # the stop rule does not end the answer at "Dr." or at an initial
    assert find_stop("Dr. Dre played him. Then more", "sentence") == len("Dr. Dre played him.")
    assert find_stop("J. K. Simmons played him. Then", "sentence") == len(
        "J. K. Simmons played him."
    )


def test_choice_naming_both_or_neither_candidate_is_wrong_and_counted():
    q = Question(
        "w",
        "The developer argued with the designer because he did not like the design. Who does 'he' "
        "refer to?",
        "developer",
        ("developer",),
        "coreference",
        "designer",
    )
    g = ChoiceGrader({}, ())
    assert grade(g, q, "The developer.") == (True, "developer", "candidate")
    assert grade(g, q, "He refers to the designer.") == (False, "designer", "candidate")
    assert grade(g, q, "Either the developer or the designer.") == (False, "developer", "both")
    assert grade(g, q, "It is unclear.") == (False, None, "neither")
    # the earliest named, whatever the grade
    assert g.locate(q, "the designer, not the developer")[0].start == 4


def test_nli_labels_in_any_word_form():
    q = Question(
        "n", "For the statement ... entailment, contradiction, or neutrality?", "contradiction", ()
    )
    g = LabelGrader({}, ())
    assert grade(g, q, "The hypothesis contradicts the statement.") == (
        True,
        "contradicts",
        "label",
    )
    assert grade(g, q, "It represents entailment.") == (False, "entailment", "label")
    assert grade(g, q, "Neither entailment nor contradiction.")[::2] == (False, "ambiguous")
    # "neutral" in its noun form
    assert grade(g, Question("n2", "…", "neutral", ()), "Neutrality.")[0]


def test_math_numbers_as_words_with_commas_and_decimals_and_refusals():
    assert [
        v for v, _ in numbers("one thousand two hundred and five, 1,000 and 21.0 or twenty-one")
    ] == [
        1205.0,
        1000.0,
        21.0,
        21.0,
    ]
    g = NumberGrader({}, ())
    q = Question("m", "How many?", "[21.0]", ("[21.0]",), "math")
    assert grade(g, q, "She has 21 apples.") == (True, "21", "number")
    assert grade(g, q, "She has twenty-one apples.")[0]
    assert grade(g, q, "It is 21.0.")[0]
    # the last number counts
    assert grade(g, q, "First 3, then 20 apples.") == (False, "20", "number")
    big = Question("b", "How much?", "[1000.0]", ("[1000.0]",), "math")
    assert grade(g, big, "It costs $1,000.")[0]
    unanswerable = Question("u", "How old is the captain?", "", ("",), "math", answerable=False)
    assert grade(g, unanswerable, "This cannot be determined from the information given.") == (
        True,
        "cannot",
        "refusal",
    )
    assert not grade(g, unanswerable, "The captain is 42.")[0]
    assert not grade(g, q, "I cannot tell.")[0]  # a refusal of an answerable question is wrong


def write_files(folder: Path) -> None:
    """A few rows of each LLMsKnow file, in the published format."""
    rows = {
        "movie_qa": "Question,Answer\nWho acted as Stephen in the movie 'Pulse 2'?,Jamie Bamber\n",
        "winobias": "type,stereotype,pronoun,sentence,answer,incorrect_answer,q,q_instruct\n"
        "1,pro,he,The developer argued with the designer because he did not like the "
        "design.,developer,designer,"
        "The pronoun 'he' refers to the,Who does the pronoun 'he' refer to?\n",
        "winogrande": "Question,Answer,Wrong_Answer\nSarah beat Mary so _ was sad. Who is "
        "_?,Mary,Sarah\n",
        "mnli": 'Question,Answer,Origin\n"For the statement, ""A"", does ""B"" represent '
        'entailment?",neutral,mnli\n',
        "AnswerableMath": "id,question,answer,answerable,category,relevant_ids,source\n"
        "7,How many?,[9.0],True,,,MultiArith\n8,How old is the captain?,[],False,,,x\n",
    }
    for test, train in FILES.values():
        for file in (test, train):
            stem = next(k for k in rows if file.startswith(k))
            (folder / file).write_text(rows[stem])


def test_each_dataset_loads_with_its_grader_and_split(tmp_path):
    write_files(tmp_path)
    kinds = {
        "movies": "alias",
        "winobias": "choice",
        "winogrande": "choice",
        "mnli": "label",
        "math": "number",
    }
    for name, kind in kinds.items():
        ds = load_dataset(name, "test", str(tmp_path))
        assert ds.kind == kind and ds.questions and ds.name.startswith(name)
        assert type(grader_for(ds)).__name__ == {"alias": "Grader"}.get(
            kind, f"{kind.title()}Grader"
        )
    wino = load_dataset("winobias", "test", str(tmp_path)).questions[0]
    assert (wino.answer, wino.wrong_answer) == ("developer", "designer") and wino.question.endswith(
        "refer to?"
    )
    math = load_dataset("math", "train", str(tmp_path))
    assert math.name == "math:AnswerableMath" and [q.answerable for q in math.questions] == [
        True,
        False,
    ]
    # "[9.0]" reads as an answer would say it
    assert [q.answer for q in math.questions] == ["9", ""]
    (tmp_path / "mnli_train.csv").unlink()
    with pytest.raises(
        HalluscanError, match="mnli_train.csv is missing; run `halluscan data fetch llmsknow`"
    ):
        load_dataset("mnli", "train", str(tmp_path))


def test_the_data_dir_comes_from_the_flag_then_the_environment(tmp_path, monkeypatch):
    from halluscan.data.llmsknow import data_dir

    monkeypatch.setenv("HALLUSCAN_DATA", str(tmp_path / "env"))
    assert data_dir("") == tmp_path / "env" and data_dir("x") == Path("x")
    monkeypatch.delenv("HALLUSCAN_DATA")
    monkeypatch.setenv("HALLUSCAN_CACHE", str(tmp_path / "cache"))
    assert data_dir("") == tmp_path / "cache" / "data" / "llmsknow"


@pytest.mark.skipif(
    not SHARED.is_dir(), reason="the LLMsKnow files are not beside this checkout (../shared/data)"
)
def test_the_published_files_load():
    sizes = {name: len(load_dataset(name, "test", str(SHARED)).questions) for name in FILES}
    # repeated questions are dropped (mnli_validation holds 10,000 rows but 6,238 distinct
    # questions)
    assert sizes == {
        "movies": 7764,
        "winobias": 1584,
        "winogrande": 10000,
        "mnli": 6238,
        "math": 650,
    }


def test_number_phrasings_a_reviewer_found():
    # "and" joins only after a scale word
    assert [v for v, _ in numbers("five and six")] == [5.0, 6.0]
    assert [v for v, _ in numbers("2 hundred dollars, $3 million")] == [200.0, 3e6]
    assert [v for v, _ in numbers("3/4 of it, then 1e-05")] == [0.75, 1e-05]
    g = NumberGrader({}, ())
    q = Question("m", "What is x?", "3", ("3",), "math")
    # the number after the refusal word is the answer
    assert grade(g, q, "Since x cannot be negative, x = 3.")[0]
    unanswerable = Question("u", "How old is the captain?", "", (), "math", answerable=False)
    assert grade(g, unanswerable, "I don’t know.")[2] == "refusal"  # curly apostrophe
