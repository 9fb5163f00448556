import json

import numpy as np
import pytest
import torch

from halluscan.errors import HalluscanError
from halluscan.store import ActivationStore

LAYOUT = {
    "positions": ["last_q", "-1"],
    "dtype": "float32",
    "sites": {"residual": {"layers": [0, 1, 2], "dims": [4]}},
}


def make(root, key="k", dtype="float32"):
    return ActivationStore.open_or_create(
        root, key=key, layout={**LAYOUT, "dtype": dtype}, provenance={"model": "m"}
    )


@pytest.mark.parametrize("dtype,tol", [("float32", 0.0), ("bfloat16", 1e-2)])
def test_round_trip_by_position_and_layer(tmp_path, dtype, tol):
    s = make(tmp_path / "s", dtype=dtype)
    a = torch.randn(5, 3, 2, 4)
    b = torch.randn(2, 3, 2, 4)
    s.append({"residual": a}, np.ones((5, 2), bool), [{"qid": str(i)} for i in range(5)])
    s.append({"residual": b}, np.zeros((2, 2), bool), [{"qid": str(i)} for i in range(5, 7)])
    r = ActivationStore.open(tmp_path / "s")
    full = torch.cat([a, b])
    torch.testing.assert_close(
        r.position("-1"), full[:, :, 1], atol=tol * full.abs().max(), rtol=tol
    )
    torch.testing.assert_close(r.layer(2), full[:, 2], atol=tol * full.abs().max(), rtol=tol)
    assert (
        r.n_examples == 7 and r.valid().sum() == 10 and r.stored_ids() == {str(i) for i in range(7)}
    )
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert [c["rows"] for c in m["chunks"]] == [5, 2] and all(
        set(c["crc32"]) == {"residual", "valid", "examples"} for c in m["chunks"]
    )


def test_store_from_another_config_is_refused_and_kept(tmp_path):
    s = make(tmp_path / "s")
    s.append({"residual": torch.zeros(1, 3, 2, 4)}, np.ones((1, 2), bool), [{"qid": "a"}])
    with pytest.raises(HalluscanError, match="made with another model, dataset or config"):
        make(tmp_path / "s", key="other")
    assert ActivationStore.open(tmp_path / "s").n_examples == 1
    assert make(tmp_path / "s").n_examples == 1  # same key resumes


def test_shape_mismatch_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="does not match layout"):
        make(tmp_path / "s").append(
            {"residual": torch.zeros(1, 2, 2, 4)}, np.ones((1, 2), bool), [{"qid": "a"}]
        )


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(HalluscanError, match="choose a writable folder"):
        make(blocker / "s")
    assert blocker.read_text() == "not a folder"


def test_json_output_is_strict(tmp_path):
    from halluscan.atomic import write_json

    write_json(tmp_path / "m.json", {"a": float("nan"), "b": [np.float64(0.5), float("inf")]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": [0.5, None]}
    assert not list(tmp_path.glob("*.tmp"))


def test_store_of_another_format_is_refused(tmp_path):
    make(tmp_path / "s")
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    m["format"] = 1
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(HalluscanError, match="has format 1 but this halluscan writes format 3"):
        make(tmp_path / "s")


def test_a_failed_manifest_write_leaves_memory_equal_to_disk(tmp_path, monkeypatch):
    import halluscan.store.store as st

    s = make(tmp_path / "s")
    s.append(
        {"residual": torch.ones(2, 3, 2, 4)}, np.ones((2, 2), bool), [{"qid": "a"}, {"qid": "b"}]
    )
    real = st.write_json

    def failing(path, obj):
        if path.name == "manifest.json":
            raise HalluscanError(
                f"could not write {path}: No space left on device; free disk space"
            )
        return real(path, obj)

    monkeypatch.setattr(st, "write_json", failing)
    with pytest.raises(HalluscanError, match="No space left on device"):
        s.append({"residual": torch.zeros(1, 3, 2, 4)}, np.ones((1, 2), bool), [{"qid": "c"}])
    monkeypatch.undo()
    on_disk = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert s.chunk_names == [c["name"] for c in on_disk["chunks"]] and s.key == on_disk["key"]
    assert s.n_examples == 2 and s.stored_ids() == {"a", "b"}
    # the same object goes on: the next chunk takes the free name and the store stays consistent
    s.append({"residual": torch.zeros(1, 3, 2, 4)}, np.ones((1, 2), bool), [{"qid": "c"}])
    r = ActivationStore.open(tmp_path / "s")
    assert r.n_examples == 3 and r.verify() == [] and s.chunk_names == r.chunk_names


@pytest.mark.parametrize(
    "change,made,asked",
    [
        ({"dtype": "bfloat16"}, "dtype=float32", "dtype=bfloat16"),
        ({"positions": ["last_q"]}, 'positions=["last_q", "-1"]', 'positions=["last_q"]'),
        (
            {"sites": {"residual": {"layers": [0, 1, 2, 3], "dims": [4]}}},
            "residual.layers=0..2",
            "residual.layers=0..3",
        ),
        (
            {"sites": {"residual": {"layers": [0, 1, 2], "dims": [8]}}},
            "residual.dims=[4]",
            "residual.dims=[8]",
        ),
        (
            {"sites": {"mlp": {"layers": [1, 2], "dims": [4]}}},
            'sites=["residual"]',
            'sites=["mlp"]',
        ),
    ],
)
def test_resume_with_another_layout_is_refused_and_kept(tmp_path, change, made, asked):
    s = make(tmp_path / "s")
    s.append({"residual": torch.ones(1, 3, 2, 4)}, np.ones((1, 2), bool), [{"qid": "a"}])
    before = {
        p.relative_to(tmp_path): p.read_bytes()
        for p in sorted((tmp_path / "s").rglob("*"))
        if p.is_file()
    }
    with pytest.raises(HalluscanError) as e:
        ActivationStore.open_or_create(
            tmp_path / "s", key="k", layout={**LAYOUT, **change}, provenance={}
        )
    msg = str(e.value)
    assert f"was made with layout {made}, but {asked} was asked" in msg
    assert "use another --name, or delete the folder" in msg and "\n" not in msg
    after = {
        p.relative_to(tmp_path): p.read_bytes()
        for p in sorted((tmp_path / "s").rglob("*"))
        if p.is_file()
    }
    assert after == before
    # the same layout (tuples or lists alike) still resumes
    same = {**LAYOUT, "positions": tuple(LAYOUT["positions"])}
    assert (
        ActivationStore.open_or_create(
            tmp_path / "s", key="k", layout=same, provenance={}
        ).n_examples
        == 1
    )


def test_chunk_files_no_manifest_names_are_removed_when_a_writer_opens_the_store(tmp_path):
    s = make(tmp_path / "s")
    s.append(
        {"residual": torch.randn(2, 3, 2, 4)}, np.ones((2, 2), bool), [{"qid": "a"}, {"qid": "b"}]
    )
    stray = [  # a retried Ray worker's chunk, and a killed write's temporary file
        tmp_path / "s" / "residual" / "chunk_s000003_0a1b2c.npy",
        tmp_path / "s" / "examples" / "chunk_s000003_0a1b2c.jsonl",
        tmp_path / "s" / "valid" / ".chunk_000001.npy.tmp",
    ]
    for f in stray:
        f.write_bytes(b"partial")
    ActivationStore.open(tmp_path / "s")  # a reader leaves them
    assert all(f.exists() for f in stray)
    r = make(tmp_path / "s")
    assert not any(f.exists() for f in stray)
    assert r.n_examples == 2 and r.verify() == [] and r.stored_ids() == {"a", "b"}


def test_a_group_commit_lists_several_written_chunks_in_one_manifest_write(tmp_path, monkeypatch):
    from halluscan.store import ChunkEntry
    from halluscan.store import store as store_mod
    from halluscan.store.chunks import encode

    s = make(tmp_path / "s")
    entries = []
    for k, ids in enumerate((["a", "b"], ["c"])):
        files = encode(
            {"residual": torch.randn(len(ids), 3, 2, 4)}, np.ones((len(ids), 2), bool), "float32"
        )
        name = f"chunk_r{k}"
        entries.append(
            ChunkEntry(name, ids, s.write_encoded(name, files, [{"qid": i} for i in ids]))
        )
    writes = []
    real = store_mod.write_json
    monkeypatch.setattr(store_mod, "write_json", lambda p, m: (writes.append(p), real(p, m))[1])
    s.commit(entries)
    assert len(writes) == 1 and s.chunk_names == ["chunk_r0", "chunk_r1"] and s.n_examples == 3
    assert make(tmp_path / "s").verify() == []
    # an id twice in one group, or again later
    with pytest.raises(ValueError, match="already stored"):
        s.commit([ChunkEntry("chunk_r2", ["d"], {}), ChunkEntry("chunk_r3", ["d"], {})])
    with pytest.raises(ValueError, match="already committed"):
        s.commit([ChunkEntry("chunk_r0", ["e"], {})])
    assert s.chunk_names == ["chunk_r0", "chunk_r1"]
