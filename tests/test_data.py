import json
from collections import Counter

import pytest

from halluscan.data import build_world_facts, load_dataset
from halluscan.errors import HalluscanError


@pytest.fixture(scope="module")
def wf():
    return build_world_facts()


def test_world_facts_size_relations_and_determinism(wf):
    rel = Counter(q.relation for q in wf.questions)
    assert len(wf.questions) >= 1500 and len(rel) >= 4
    assert all(q.answer and q.aliases and q.answer == q.aliases[0] for q in wf.questions)
    assert len({q.qid for q in wf.questions}) == len(wf.questions)
    assert build_world_facts().sha256 == wf.sha256


def test_world_facts_known_rows(wf):
    by_id = {q.qid: q for q in wf.questions}
    fr = by_id["capital_of_country/FR"]
    assert fr.question == "What is the capital of France?" and fr.answer == "Paris"
    # a shared currency name is qualified by its issuer, so "US dollar" is not right for Australia
    au = by_id["currency_of_country/AU"]
    assert "Australian Dollar" in au.aliases and "Dollar" not in au.aliases
    # aliases that repeat the question are dropped (grading would be trivial)
    assert all("kuwait" != a.lower() for a in by_id["capital_of_country/KW"].aliases)


def test_csv_and_jsonl_are_read(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text("question,answer,aliases\nWho wrote Hamlet?,Shakespeare,William Shakespeare|Shakespear\n")
    ds = load_dataset(str(p))
    assert ds.questions[0].aliases == ("Shakespeare", "William Shakespeare", "Shakespear")
    j = tmp_path / "q.jsonl"
    j.write_text(json.dumps({"question": "2+2?", "answer": "4", "aliases": ["four"]}) + "\n")
    assert load_dataset(str(j)).questions[0].aliases == ("4", "four")


@pytest.mark.parametrize(
    "name,content,pattern",
    [
        ("a.csv", "question,gold\nQ?,A\n", r"a.csv: missing column 'answer'"),
        ("b.csv", "", r"b.csv: the dataset is empty"),
        ("c.csv", "question,answer\nQ?,\n", r"c.csv: row 1 has an empty 'answer'"),
        ("d.jsonl", '{"question": "Q?", "answer": "A"}\nnot json\n', r"d.jsonl: line 2 is not valid JSON"),
        ("e.txt", "x", r"unknown dataset format '.txt'"),
    ],
)
def test_bad_files_name_the_file_and_field(tmp_path, name, content, pattern):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(HalluscanError, match=pattern):
        load_dataset(str(p))


def test_missing_file(tmp_path):
    with pytest.raises(HalluscanError, match="dataset file not found"):
        load_dataset(str(tmp_path / "nope.csv"))


def test_user_file_answers_form_the_relation_vocabulary(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text("question,answer,relation\nCapital of Peru?,Lima,capital\nCapital of Chile?,Santiago,capital\n")
    ds = load_dataset(str(p))
    assert ds.relation_vocab == {"capital": ("Lima", "Santiago")}


def test_column_names_ignore_case(tmp_path):
    p = tmp_path / "movies.csv"
    p.write_text("Question,Answer\nWho directed Alien?,Ridley Scott\n")
    assert load_dataset(str(p)).questions[0].answer == "Ridley Scott"
