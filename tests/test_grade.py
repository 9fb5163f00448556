from halluscan.grade import Grader, spans_overlap
from halluscan.records import Generation, Question
from halluscan.text import normalize


def gen(text):
    return Generation("q", (1,), (2,), text, (0,), "eos")


VOCAB = {
    "capital_of_country": ("Bogotá", "Paris", "Lyon", "Niamey", "Abuja"),
    "country_of_capital": ("Niger", "Nigeria", "France", "Colombia"),
    "currency_of_country": ("Euro", "Australian Dollar", "US dollar"),
}
ENTITIES = ("Medellín", "Lagos", "Marseille", "South America")


def grader(mode="class-blind"):
    return Grader(VOCAB, ENTITIES, mode)


def test_normalize_folds_case_accents_punctuation_articles():
    assert normalize("The  Bogotá, D.C.!") == "bogota d c"
    assert normalize("São Tomé") == "sao tome"


def test_accents_and_case_are_folded():
    q = Question(
        "1", "What is the capital of Colombia?", "Bogotá", ("Bogotá",), "capital_of_country"
    )
    g = grader().grade(q, gen("The capital of Colombia is BOGOTA."))
    assert g.correct and g.exact_text == "BOGOTA"


def test_whole_words_only():
    q = Question(
        "2", "Niamey is the capital of which country?", "Niger", ("Niger",), "country_of_capital"
    )
    g = grader().grade(q, gen("Niamey is the capital of Nigeria."))
    assert not g.correct
    assert g.exact_text == "Nigeria"  # located like any answer, by the same rule
    q2 = Question("3", "Which element has atomic number 1?", "H", ("H",), "custom")
    assert not grader().grade(q2, gen("It is the lightest one.")).correct


def test_aliases_that_repeat_the_question_are_dropped():
    q = Question(
        "10", "What is the capital of Kuwait?", "Kuwait City", ("Kuwait City", "Kuwait"), "custom"
    )
    assert not grader().grade(q, gen("The capital of Kuwait is Jahra.")).correct
    assert grader().grade(q, gen("It is Kuwait City.")).correct


def test_aliases_count():
    q = Question(
        "4",
        "What is the currency of Kiribati?",
        "Australian dollar",
        ("Australian dollar", "AUD"),
        "currency_of_country",
    )
    assert grader().grade(q, gen("Kiribati uses AUD.")).correct
    g = grader().grade(q, gen("It is the Australian dollar."))
    assert g.correct and g.exact_text == "Australian dollar" and g.locator == "type"


def test_a_typed_relation_locates_its_type_only_and_others_fall_back_to_entities_and_names():
    q = Question(
        "5", "What is the capital of Colombia?", "Bogotá", ("Bogotá",), "capital_of_country"
    )
    # Medellín is no name of the asked type in this vocabulary: nothing is located
    g = grader().grade(q, gen("The capital of Colombia is Medellín."))
    assert not g.correct and g.exact_span is None and g.locator == "none"
    assert grader().grade(q, gen("It is Lyon.")).locator == "type"
    free = Question("5b", "Who made the Zorbania map?", "Lagos", ("Lagos",), "custom")
    g = grader().grade(free, gen("It was made in Medellín."))
    assert not g.correct and g.exact_text == "Medellín" and g.locator == "entity"
    g2 = grader().grade(free, gen("It was drawn by Zorbania City."))
    assert g2.exact_text == "Zorbania City" and g2.locator == "fallback"


def test_question_words_are_skipped():
    q = Question(
        "6", "Paris is the capital of which country?", "France", ("France",), "country_of_capital"
    )
    g = grader().grade(q, gen("Paris is the capital of France."))
    assert g.exact_text == "France"


def test_class_blind_uses_the_same_rule_for_both_classes():
    # The locator does not look at the gold answer: the same response gets the same span
    # whether it is graded right or wrong.
    right = Question(
        "7", "What is the capital of France?", "Paris", ("Paris",), "capital_of_country"
    )
    wrong = Question("8", "What is the capital of France?", "Lyon", ("Lyon",), "capital_of_country")
    text = "I think it is Paris."
    a, b = grader().grade(right, gen(text)), grader().grade(wrong, gen(text))
    assert a.correct and not b.correct
    assert (
        a.exact_span == b.exact_span
        and a.exact_text == "Paris"
        and a.locator == b.locator == "type"
    )
    # a hedged answer: class-blind takes the earliest answer-type entity, asymmetric the alias
    hedged = gen("Lyon, or maybe Paris.")
    c = grader().grade(right, hedged)
    d = grader("asymmetric").grade(right, hedged)
    assert c.correct and d.correct and c.ambiguous == "two candidates"
    assert c.exact_text == "Lyon" and d.exact_text == "Paris" and d.locator == "alias"
    # wrong ones use the rule
    assert grader("asymmetric").grade(wrong, gen(text)).exact_text == "Paris"


def test_nothing_to_locate():
    q = Question("9", "What is the capital of France?", "Paris", ("Paris",), "capital_of_country")
    g = grader().grade(q, gen("i do not know."))
    assert not g.correct and g.exact_span is None and g.locator == "none"


def test_spans_overlap():
    from halluscan.records import Span

    assert spans_overlap(Span(0, 5), Span(4, 9)) and not spans_overlap(Span(0, 4), Span(4, 9))
    assert not spans_overlap(None, Span(0, 1))
