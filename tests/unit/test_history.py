"""The SQLite generation history: round trip, search filters, threads, damaged files, safe deletes."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from modules.history import MIGRATIONS, HistoryEntry, HistoryNotFoundError, HistorySchemaError, HistoryStore

INFOTEXT = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 64x64, Model hash: 6ce0161689, Model: v1-5"


def entry(**changes) -> HistoryEntry:
    base = HistoryEntry(
        task="txt2img",
        created_at=1_700_000_000.0,
        duration_s=1.5,
        prompt="a cat",
        negative_prompt="blurry",
        params=INFOTEXT,
        seed=42,
        model_name="v1-5",
        model_hash="6ce0161689",
        path=None,
        width=64,
        height=64,
        sampler="Euler a",
    )
    return replace(base, **changes)


def saved_file(folder: Path, name: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\x89PNG fake image")
    return str(path)


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


@pytest.fixture
def store(tmp_path: Path, outputs: Path):
    with HistoryStore(tmp_path / "data" / "history.sqlite3", outputs_root=outputs) as history:
        yield history


def test_schema_version_and_wal_mode(store: HistoryStore):
    assert store.schema_version == len(MIGRATIONS) == 1
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_get_export_delete_round_trip(store: HistoryStore, outputs: Path):
    path = saved_file(outputs / "txt2img-images", "00000-42.png")
    recorded = entry(path=path, seed=4294967295, model_hash="6CE0161689")
    entry_id = store.record(recorded)

    row = store.get(entry_id)
    assert row is not None and row.id == entry_id
    assert (row.task, row.prompt, row.negative_prompt, row.seed) == ("txt2img", "a cat", "blurry", 4294967295)
    assert (row.width, row.height, row.sampler, row.duration_s) == (64, 64, "Euler a", 1.5)
    assert row.model_hash == "6ce0161689"  # stored lower-case
    assert row.path == os.path.abspath(path)
    assert store.export_infotext(entry_id) == INFOTEXT
    assert [r.id for r in store.search()] == [entry_id]

    assert store.delete(entry_id) is True
    assert store.get(entry_id) is None
    assert store.delete(entry_id) is False
    assert Path(path).exists()  # delete_file was not asked for
    with pytest.raises(HistoryNotFoundError, match=f"no history entry {entry_id}"):
        store.export_infotext(entry_id)
    # ids are never reused after a delete
    assert store.record(entry()) > entry_id


def test_record_happens_after_the_file_is_in_place(store: HistoryStore, outputs: Path):
    with pytest.raises(FileNotFoundError, match="recorded after the image is saved"):
        store.record(entry(path=str(outputs / "not-yet-renamed.png")))
    with pytest.raises(ValueError, match="10 hex digits"):
        store.record(entry(model_hash="xyz"))
    assert store.count() == 0
    assert store.get(store.record(entry(path=None))).path is None  # unsaved images are allowed


def test_search_is_newest_first_with_limit_and_offset(store: HistoryStore):
    ids = [store.record(entry(created_at=1000.0 + i, seed=i)) for i in range(5)]
    store.record(entry(created_at=1002.0, seed=99))  # same time as seed 2: the later id comes first
    assert [r.seed for r in store.search()] == [4, 3, 99, 2, 1, 0]
    assert [r.seed for r in store.search(limit=2, offset=1)] == [3, 99]
    assert store.search(limit=0) == []
    assert store.count() == 6
    assert ids == sorted(ids)


def test_text_search_is_case_insensitive_on_prompt_and_negative(store: HistoryStore):
    store.record(entry(prompt="A Red Fox", negative_prompt="", seed=1))
    store.record(entry(prompt="a dog", negative_prompt="RED eyes", seed=2))
    store.record(entry(prompt="Straße in MÜNCHEN", negative_prompt="", seed=3))
    store.record(entry(prompt="blue sky", negative_prompt="", seed=4))
    assert [r.seed for r in store.search(text="red")] == [2, 1]
    assert [r.seed for r in store.search(text="münchen")] == [3]  # beyond ASCII
    assert [r.seed for r in store.search(text="STRASSE")] == [3]  # casefold: ß == ss
    assert store.search(text="green") == []


def test_text_search_treats_like_wildcards_literally(store: HistoryStore):
    store.record(entry(prompt="100% detail, hi_res", seed=1))
    store.record(entry(prompt="1000 details, hires", seed=2))
    store.record(entry(prompt="path C:\\art\\x", seed=3))
    assert [r.seed for r in store.search(text="100%")] == [1]
    assert [r.seed for r in store.search(text="hi_res")] == [1]
    assert [r.seed for r in store.search(text="%")] == [1]
    assert [r.seed for r in store.search(text="_")] == [1]
    assert [r.seed for r in store.search(text="\\art")] == [3]
    assert store.count(text="0%d") == 0


def test_date_range_is_since_inclusive_until_exclusive(store: HistoryStore):
    for day in range(5):
        store.record(entry(created_at=86400.0 * day, seed=day))
    assert [r.seed for r in store.search(since=86400.0, until=3 * 86400.0)] == [2, 1]
    assert [r.seed for r in store.search(since=3 * 86400.0)] == [4, 3]
    assert [r.seed for r in store.search(until=86400.0)] == [0]
    assert store.count(since=86400.0 * 10) == 0


def test_model_filter_by_name_title_and_hash_prefix(store: HistoryStore):
    store.record(entry(model_name="v1-5-pruned", model_hash="6ce0161689", seed=1))
    store.record(entry(model_name="sdxl_base", model_hash="31e35c80fc", seed=2))
    store.record(entry(model_name="v1-5-pruned-emaonly", model_hash=None, seed=3))
    assert [r.seed for r in store.search(model="V1-5-PRUNED")] == [1]  # whole name, any case
    assert [r.seed for r in store.search(model="6ce0")] == [1]
    assert [r.seed for r in store.search(model="31E35C80FC")] == [2]
    assert [r.seed for r in store.search(model="sdxl_base [31e35c80fc]")] == [2]
    assert [r.seed for r in store.search(model="v1-5-pruned-emaonly")] == [3]
    assert store.search(model="6c%") == []  # a wildcard is not a prefix
    assert [r.seed for r in store.search(text="cat", model="sdxl_base", since=0.0)] == [2]


def test_two_writers_and_a_searcher_at_once(store: HistoryStore):
    errors: list[BaseException] = []
    writers_done = threading.Event()
    searches = [0]

    def write(worker: int) -> None:
        try:
            for i in range(200):
                store.record(entry(created_at=float(i), seed=worker * 1000 + i, prompt=f"worker {worker} image {i}"))
        except BaseException as error:  # collected and asserted on below
            errors.append(error)

    def search() -> None:
        try:
            while not writers_done.is_set():
                rows = store.search(text="worker", limit=50)
                assert len(rows) <= 50
                searches[0] += 1
        except BaseException as error:
            errors.append(error)

    writers = [threading.Thread(target=write, args=(n,)) for n in (1, 2)]
    searcher = threading.Thread(target=search)
    searcher.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=30)
    writers_done.set()
    searcher.join(timeout=30)

    assert errors == []
    assert store.count() == 400
    seeds = {r.seed for r in store.search(limit=1000)}
    assert seeds == {w * 1000 + i for w in (1, 2) for i in range(200)}
    assert searches[0] > 0


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_damaged_database_is_moved_aside(tmp_path: Path, caplog, damage: str):
    path = tmp_path / "history.sqlite3"
    if damage == "random bytes":
        path.write_bytes(os.urandom(8192))
    else:
        with HistoryStore(path) as history:
            for i in range(300):
                history.record(entry(prompt="long prompt " * 20, seed=i))
        with open(path, "r+b") as handle:
            handle.truncate(20000)
    original = path.read_bytes()

    with caplog.at_level(logging.WARNING, logger="modules.history"):
        history = HistoryStore(path)
    with history:
        assert history.count() == 0
        new_id = history.record(entry())
        assert history.get(new_id).prompt == "a cat"

    asides = list(tmp_path.glob("history.sqlite3.corrupt-*"))
    assert len(asides) == 1 and asides[0].read_bytes() == original
    assert any("damaged" in r.getMessage() and asides[0].name in r.getMessage() for r in caplog.records)


def test_newer_schema_is_refused_not_destroyed(tmp_path: Path):
    path = tmp_path / "history.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(HistorySchemaError, match="newer Easel"):
        HistoryStore(path)
    assert list(tmp_path.glob("*.corrupt-*")) == []


def test_migration_hook_upgrades_an_existing_file(tmp_path: Path):
    path = tmp_path / "history.sqlite3"
    with HistoryStore(path) as history:
        old_id = history.record(entry(seed=7))

    def add_rating(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE history ADD COLUMN rating INTEGER NOT NULL DEFAULT 0")

    with HistoryStore(path, migrations=MIGRATIONS + (add_rating,)) as history:
        assert history.schema_version == 2
        assert history.get(old_id).seed == 7
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT seed, rating FROM history").fetchall() == [(7, 0)]


def test_delete_file_only_inside_outputs_root(store: HistoryStore, outputs: Path, tmp_path: Path):
    inside = saved_file(outputs / "txt2img-images" / "2024-05-01", "00001-42.png")
    outside = saved_file(tmp_path / "elsewhere", "precious.png")
    sneaky = saved_file(outputs / "txt2img-images", "00002-42.png")
    os.remove(sneaky)
    os.symlink(outside, sneaky)  # inside by name, outside once resolved
    escaping = str(outputs / ".." / "elsewhere" / "precious.png")

    inside_id = store.record(entry(path=inside))
    outside_id = store.record(entry(path=outside))
    sneaky_id = store.record(entry(path=sneaky))
    escaping_id = store.record(entry(path=escaping))

    assert store.delete(inside_id, delete_file=True) is True
    assert not Path(inside).exists()
    for entry_id in (outside_id, sneaky_id, escaping_id):
        assert store.delete(entry_id, delete_file=True) is True
        assert store.get(entry_id) is None
    assert Path(outside).read_bytes() == b"\x89PNG fake image"
    assert os.path.islink(sneaky)


def test_delete_file_without_outputs_root_keeps_files(tmp_path: Path):
    path = saved_file(tmp_path / "outputs", "a.png")
    with HistoryStore(tmp_path / "h.sqlite3") as history:
        entry_id = history.record(entry(path=path))
        assert history.delete(entry_id, delete_file=True) is True
    assert Path(path).exists()


def test_prune_missing_removes_only_rows_whose_file_is_gone(store: HistoryStore, outputs: Path):
    kept = store.record(entry(path=saved_file(outputs, "kept.png")))
    gone_path = saved_file(outputs, "gone.png")
    gone = store.record(entry(path=gone_path))
    unsaved = store.record(entry(path=None))
    os.remove(gone_path)

    assert store.prune_missing() == 1
    assert store.get(gone) is None
    assert store.get(kept) is not None and store.get(unsaved) is not None
    assert store.prune_missing() == 0
    assert all(r.path is None or Path(r.path).exists() for r in store.search())
