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
    p.write_text(
        "question,answer,aliases\nWho wrote Hamlet?,Shakespeare,William Shakespeare|Shakespear\n"
    )
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
        (
            "d.jsonl",
            '{"question": "Q?", "answer": "A"}\nnot json\n',
            r"d.jsonl: line 2 is not valid JSON",
        ),
        ("e.txt", "x", r"unknown dataset format '.txt'"),
        # duplicate ids are refused, naming the ids and rows
        (
            "dup.csv",
            "id,question,answer\na,Q1?,A\nb,Q2?,B\na,Q3?,C\n",
            r"dup.csv: duplicate question id\(s\): 'a' in rows 1, 3",
        ),
        (
            "dup.jsonl",
            '{"qid": "x", "question": "Q1?", "answer": "A"}\n\n{"qid": "x", "question": "Q2?", '
            '"answer": "B"}\n',
            r"dup.jsonl: duplicate question id\(s\): 'x' in rows 1, 2",
        ),
        # a row without an id gets its row number, which may clash with an explicit id
        (
            "mixed.csv",
            "id,question,answer\n2,Q1?,A\n,Q2?,B\n",
            r"'2' in rows 1, 2; give every row its own id",
        ),
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
    p.write_text(
        "question,answer,relation\nCapital of Peru?,Lima,capital\nCapital of "
        "Chile?,Santiago,capital\n"
    )
    ds = load_dataset(str(p))
    assert ds.relation_vocab == {"capital": ("Lima", "Santiago")}


def test_column_names_ignore_case(tmp_path):
    p = tmp_path / "movies.csv"
    p.write_text("Question,Answer\nWho directed Alien?,Ridley Scott\n")
    assert load_dataset(str(p)).questions[0].answer == "Ridley Scott"


def test_utf8_bom_is_dropped(tmp_path):
    p = tmp_path / "excel.csv"
    p.write_bytes("\ufeffQuestion,Answer\r\nWho wrote Faust?,Goethe\r\n".encode())
    q = load_dataset(str(p)).questions[0]
    assert (q.question, q.answer) == ("Who wrote Faust?", "Goethe")
    j = tmp_path / "bom.jsonl"
    j.write_bytes('\ufeff{"question": "2+2?", "answer": "4"}\n'.encode())
    assert load_dataset(str(j)).questions[0].answer == "4"


def test_csv_keeps_line_breaks_inside_quoted_fields(tmp_path):
    p = tmp_path / "multi.csv"
    p.write_bytes(b'question,answer\r\n"Line one\r\nline two?",A\r\n')
    assert load_dataset(str(p)).questions[0].question == "Line one\r\nline two?"


@pytest.mark.parametrize("name", ["latin1.csv", "latin1.jsonl"])
def test_non_utf8_file_is_a_clear_error(tmp_path, name):
    p = tmp_path / name
    p.write_bytes("question,answer\nWo liegt Köln?,Deutschland\n".encode("latin-1"))
    with pytest.raises(
        HalluscanError,
        match=rf"{name} is not UTF-8 text: byte 0xf6 at offset \d+.*save the file as UTF-8",
    ):
        load_dataset(str(p))
