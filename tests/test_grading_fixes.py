"""Issue 23: graders that name the answer, not a word that happens to match, and say when unsure.

Written examples for each class of error found by hand on the demo and on a chemistry set.
"""

from __future__ import annotations

import pytest

from halluscan.data.worldfacts import build_world_facts
from halluscan.grade import Grader
from halluscan.records import Generation, Question


def gen(text: str) -> Generation:
    return Generation("q", (1,), (2,), text, (0,), "eos")


@pytest.fixture(scope="module")
def facts():
    ds = build_world_facts()
    return ds, Grader.for_dataset(ds), {q.question: q for q in ds.questions}


def grade(facts, question: str, answer: str):
    _, grader, by_text = facts
    return grader.grade(by_text[question], gen(answer))


def test_an_alias_in_a_longer_name_of_the_question_counts_when_it_names_the_answer(facts):
    q = "Guatemala City is the capital of which country?"
    assert grade(facts, q, "Guatemala City is the capital of Guatemala.").correct
    # repeating the question's own name is no answer
    assert not grade(facts, q, "Guatemala City is the capital of Honduras.").correct
    assert grade(facts, "Kuwait City is the capital of which country?", "It is Kuwait.").correct


def test_the_pound_sterling_is_right_and_world_facts_currencies_carry_their_iso_names(facts):
    q = "What is the currency of United Kingdom?"
    assert grade(facts, q, "The currency of the United Kingdom is the pound sterling.").correct
    assert grade(facts, q, "It is the British pound.").correct
    assert not grade(facts, q, "It is the Welsh pound.").correct
    ds, _, _ = facts
    import pycountry

    for question in ds.questions:
        if question.relation == "currency_of_country":
            code = question.aliases[-1]
            iso = pycountry.currencies.get(alpha_3=code)
            assert iso is None or question.aliases[0] == iso.name, question


def test_a_country_named_by_its_adjective_is_right(facts):
    city = next(
        q for q in facts[0].questions if q.relation == "country_of_city" and q.aliases[0] == "India"
    )
    name = city.question.removeprefix("In which country is the city of ").rstrip("?")
    assert grade(facts, city.question, f"{name} is in the Indian state of Gujarat.").correct
    # the adjective inside a longer name is another name
    assert not grade(facts, city.question, f"{name} lies on the Indian Ocean, in Pakistan.").correct


def test_a_gold_inside_a_longer_name_does_not_count(facts):
    china = next(
        q for q in facts[0].questions if q.relation == "country_of_city" and q.aliases[0] == "China"
    )
    g = grade(facts, china.question, "It is in the Philippines, on the South China Sea.")
    assert not g.correct and g.exact_text == "Philippines"
    africa = "On which continent is South Africa?"
    assert not grade(facts, africa, "South Africa is in the southern hemisphere.").correct
    assert grade(facts, africa, "South Africa is in Africa.").correct


def test_a_negated_candidate_makes_the_grade_ambiguous(facts):
    g = grade(
        facts, "Amsterdam is the capital of which country?", "In the Netherlands, not in Germany."
    )
    assert g.correct and g.ambiguous == "negated candidate"
    g = grade(facts, "Amsterdam is the capital of which country?", "It is the Netherlands.")
    assert g.correct and g.ambiguous is None


def test_questions_whose_answer_is_in_the_question_are_dropped_and_counted(facts):
    ds, _, by_text = facts
    assert "Djibouti is the capital of which country?" not in by_text
    assert "What is the capital of Luxembourg?" not in by_text
    assert any("questions dropped" in n and "country_of_capital/DJ" in n for n in ds.notes)
    # no question is left whose only aliases could never be matched
    for q in ds.questions:
        assert q.aliases and q.answer == q.aliases[0]


ELEMENTS = {
    "indium": ("In", "Indium"),
    "beryllium": ("Be", "Beryllium"),
    "helium": ("He", "Helium"),
    "arsenic": ("As", "Arsenic"),
    "nobelium": ("No", "Nobelium"),
}


@pytest.mark.parametrize(
    ("element", "answer", "right"),
    [
        ("indium", "It is mostly found in ores.", False),
        ("beryllium", "It might be Br.", False),
        ("helium", "He was the first to name it Ne.", False),
        ("arsenic", "As far as I know it is Sb.", False),
        ("nobelium", "No, it is Md.", False),
        ("indium", "Its symbol is In.", True),
        ("beryllium", "Be.", True),
        ("helium", "The element is helium.", True),
    ],
)
def test_one_and_two_letter_aliases_count_only_as_the_located_answer(element, answer, right):
    q = Question(element, f"What is the chemical symbol of {element}?", ELEMENTS[element][0],
                 ELEMENTS[element], "custom")  # fmt: skip
    assert Grader({}, ()).grade(q, gen(answer)).correct is right


def test_a_number_alias_inside_a_longer_number_does_not_count():
    q = Question("h", "What is the atomic number of hydrogen?", "1", ("1", "one"), "custom")
    assert not Grader({}, ()).grade(q, gen("Its atomic mass is 1.008.")).correct
