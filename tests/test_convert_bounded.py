"""Issue 11, finding 8 (the survivors part) and the duplicate keys of finding 10: a
survivors file is converted in pieces, within a size limit, with bounded memory.

- a file over `max_bytes` (`[convert] max_survivors_bytes`, `winopt convert --max-bytes`)
  is refused unread, one line, previous NPZ kept; under a real daemon the run escalates;
- the conversion's peak memory is at most twice the NPZ's arrays (tracemalloc), and an
  aborted one leaves no memory behind (RSS of a fresh process); bench/convert_memory.py
  prints the figures for 100k and 1M survivors;
- pieces decode to exactly what the whole text does, and errors in any piece name the
  file's own entry and line;
- a key written twice in an entry is an error naming the entry and the key (msgspec, like
  most JSON readers, silently keeps the last value);
- the unit caps memory and tasks, and says why beside each line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon_support import DaemonProcess, npz_source_sha, poll, survivors, write_trial
from winopt.cli import main
from winopt.contracts.schemas import NPZ_META_NAME, NPZ_NAME, SURVIVORS_NAME
from winopt.contracts.errors import UserError
from winopt.cli.convert import byte_size
from winopt.handlers.convert.to_npz import convert, parse_survivors
from winopt.handlers.convert.json_pieces import Where, decode_in_pieces

REPO = Path(__file__).resolve().parent.parent


def write_rows(path: Path, count: int, batch: int = 20_000, **over: object) -> Path:
    """`count` SPEC §3 rows as `winopt optimize` writes them (the bytes of
    dump_json(rows)), made `batch` at a time so the test itself stays small."""
    with open(path, "wb") as out:
        out.write(b"[")
        for start in range(0, count, batch):
            rows = survivors(min(batch, count - start), start=1000 + 7 * start)
            for row in rows:
                row.update(over)
            body = orjson.dumps(rows, option=orjson.OPT_INDENT_2)[1:-2]  # "\n  {...},\n  {...}"
            out.write((b"," if start else b"") + body)
        out.write(b"\n]" if count else b"]")
    return path


def npz_arrays_bytes(npz: Path) -> int:
    with np.load(npz, allow_pickle=False) as data:
        return sum(data[name].nbytes for name in data.files)


# ---------------------------------------------------------------- the size limit


def test_a_file_over_the_limit_is_refused_unread_and_the_npz_kept(tmp_path: Path, capsys) -> None:
    src = write_rows(tmp_path / SURVIVORS_NAME, 20)
    convert(src)
    before = (tmp_path / NPZ_NAME).read_bytes(), (tmp_path / NPZ_META_NAME).read_bytes()
    write_rows(src, 200)
    size = src.stat().st_size
    with pytest.raises(UserError, match=rf"{size} bytes, more than the 50000 allowed for a survivors file "
                                        r"\(raise \[convert\] max_survivors_bytes"):
        convert(src, max_bytes=50_000)
    assert main(["convert", str(src), "--max-bytes", "48K"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than the 49152 allowed" in err, err
    assert ((tmp_path / NPZ_NAME).read_bytes(), (tmp_path / NPZ_META_NAME).read_bytes()) == before
    assert convert(src, max_bytes=size).count == 200  # at the limit: converted


def test_sizes_for_people() -> None:
    assert [byte_size(t) for t in ("4096", "4k", "4K", "4KiB", "2M", "4G", "1TB")] == \
        [4096, 4096, 4096, 4096, 2 << 20, 4 << 30, 1 << 40]
    with pytest.raises(Exception, match="not a size"):
        byte_size("lots")


def test_the_daemon_keeps_the_npz_and_escalates_over_its_limit(tmp_path: Path) -> None:
    """Before: no limit, a 3 GB file was converted with a 6.5 GB peak."""
    run = tmp_path / "run"
    run.mkdir()
    config = tmp_path / "daemon.toml"
    config.write_text(f'watch = ["{run}"]\ndebounce = 0.1\n[convert]\nmax_survivors_bytes = 30000\n')
    d = DaemonProcess(tmp_path / "state", [], args=["--config", str(config)])
    try:
        d.start()
        small = write_trial(run, 5)
        assert poll(lambda: npz_source_sha(run) == small), d.log()
        write_trial(run, 200, start=5000)  # ~140 KB
        assert poll(lambda: "max_survivors_bytes" in (d.run("run").get("error") or ""), 20), d.run("run")
        assert poll(lambda: (d.run("run").get("decision") or {}).get("action") == "escalate", 20), d.run("run")
        assert npz_source_sha(run) == small  # the previous NPZ stays
        assert "survivors not converted, previous NPZ kept" in d.log()
    finally:
        d.kill()


# ---------------------------------------------------------------- memory


def test_the_peak_is_at_most_twice_the_arrays(tmp_path: Path) -> None:
    """Before: the whole text and every decoded row at once, ~15 times the arrays."""
    src = write_rows(tmp_path / SURVIVORS_NAME, 200_000)
    convert(src)  # imports, caches and decoders made before measuring
    (tmp_path / NPZ_NAME).unlink()
    tracemalloc.start()
    try:
        convert(src)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arrays = npz_arrays_bytes(tmp_path / NPZ_NAME)
    assert peak <= 2 * arrays, f"peak {peak / 1e6:.1f} MB for {arrays / 1e6:.1f} MB of arrays"


def test_an_aborted_conversion_gives_its_memory_back(tmp_path: Path) -> None:
    """A fresh process converts a 160 MB file whose last entry is bad. Before: its RSS
    stayed up by about the file's size (the decoded rows' heap, never given back)."""
    src = write_rows(tmp_path / SURVIVORS_NAME, 200_000)
    data = src.read_bytes()
    src.write_bytes(data[: data.rindex(b'"seed"')] + b'"seed": -1}\n]')
    del data
    script = f"""
import sys
from winopt.handlers.convert.to_npz import convert
from winopt.contracts.errors import UserError
def rss():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS:"))
before = rss()
try:
    convert({str(src)!r})
except UserError as exc:
    print(rss() - before, exc)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    grown, _, error = proc.stdout.partition(" ")
    assert "entry 199999, seed" in error, proc.stdout + proc.stderr
    assert int(grown) < 32 << 20, f"RSS still up by {int(grown) / 1e6:.0f} MB after the aborted conversion"


# ---------------------------------------------------------------- pieces


JSON_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ['},\n{', '}, {', '"},{"', "\\", '\\"', "[", "]", "{", "}", ","])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JSON_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    entries=st.lists(JSON_VALUES, max_size=30),
    indent=st.sampled_from([None, 1, 2]),
    separators=st.sampled_from([(",", ":"), (", ", ": ")]),
    chunk=st.integers(1, 300),
)
def test_pieces_decode_to_the_whole(entries: list, indent: int | None, separators: tuple, chunk: int) -> None:
    text = json.dumps(entries, indent=indent, separators=separators if indent is None else None).encode()
    pieces: list[tuple[int, list]] = []

    def decode(data: bytes, where: Where) -> int:
        try:
            got = json.loads(data)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        pieces.append((where.entry, got))
        return len(got)

    view = memoryview(text)
    offset = [0]

    def read(n: int) -> bytes:
        block = bytes(view[offset[0] : offset[0] + n])
        offset[0] += len(block)
        return block

    assert decode_in_pieces(read, decode, chunk=chunk) == len(entries)
    assert [e for _, got in pieces for e in got] == entries
    assert [first for first, _ in pieces] == [sum(len(g) for _, g in pieces[:i]) for i in range(len(pieces))]


def test_errors_in_a_late_piece_name_the_files_entry_and_line(tmp_path: Path) -> None:
    """A file of ~4 MB (several pieces): each error reads as if it was decoded whole."""
    src = write_rows(tmp_path / SURVIVORS_NAME, 6000)
    good = src.read_bytes()
    at = good.index(b'"seed": %d,' % (1000 + 7 * 5432))
    line = good.count(b"\n", 0, at) + 1
    cases = [
        (good[:at] + b'"seed": "x",' + good[good.index(b",", at) + 1:], "entry 5432, seed: expected `int`, got `str`"),
        (good[:at] + b'"seed": 1,,' + good[good.index(b",", at) + 1:],
         f"not valid JSON (JSON is malformed: object keys must be strings at line {line})"),
        (good[:at] + b'"seed": 5, "seed": 6,' + good[good.index(b",", at) + 1:],
         "entry 5432: key 'seed' appears twice"),
    ]
    for content, words in cases:
        src.write_bytes(content)
        with pytest.raises(UserError) as info:
            convert(src)
        assert words in str(info.value), (words, str(info.value))
        whole = str(_whole_file_error(src))
        if "twice" not in words:
            assert str(info.value) == whole  # what decoding the whole text says


def _whole_file_error(src: Path) -> UserError | None:
    try:
        parse_survivors(src, src.read_bytes())
    except UserError as exc:
        return exc
    return None


# ---------------------------------------------------------------- keys written twice


@pytest.mark.parametrize(("rows", "words"), [
    ([survivors(2)[0], {**survivors(2)[1], "forward_count": 7}], None),  # no key twice
    ([{**r, "note": "a: b: c"} for r in survivors(3)], None),  # an unknown key, `:` in a string
    ([{"seed": 3, "skip_range": "0-5", "sessions": ["midday"]}], None),  # old pipeline, its extra key
])
def test_files_without_a_key_twice_convert(tmp_path: Path, rows: list, words: str | None) -> None:
    src = tmp_path / SURVIVORS_NAME
    src.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    assert convert(src).count == len(rows)


@pytest.mark.parametrize(("text", "entry", "key"), [
    # winopt's own rows: a trial field twice (the fast path decodes it), the seed twice
    (b'"window_size": 8,', 1, "window_size"),
    (b'"seed": 1007,', 1, "seed"),
])
def test_a_key_twice_is_an_error_naming_the_entry_and_the_key(tmp_path: Path, text: bytes, entry: int,
                                                             key: str) -> None:
    src = tmp_path / SURVIVORS_NAME
    src.write_bytes(orjson.dumps(survivors(3), option=orjson.OPT_INDENT_2))
    data = src.read_bytes()
    first = data.index(b"{")
    second = data.index(b"{", first + 1)
    at = data.index(text, second)
    src.write_bytes(data[:at] + text.replace(b"8", b"9").replace(b"1007", b"5") + b"\n    " + data[at:])
    with pytest.raises(UserError, match=rf"entry {entry}: key '{key}' appears twice"):
        convert(src)


def test_a_key_twice_in_an_old_pipeline_file_is_an_error(tmp_path: Path, capsys) -> None:
    src = tmp_path / SURVIVORS_NAME
    src.write_text('[{"seed": 1, "skip_range": "0-5"}, {"seed": 2, "prng_type": "java_lcg", "prng_type": "lcg32"}]')
    assert main(["convert", str(src)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "entry 1: key 'prng_type' appears twice" in err, err


# ---------------------------------------------------------------- the unit


def test_the_unit_caps_memory_and_tasks_and_says_why() -> None:
    lines = (REPO / "systemd" / "winopt-daemon.service").read_text().splitlines()
    for key in ("MemoryMax=", "TasksMax=", ):
        (index,) = [i for i, line in enumerate(lines) if line.startswith(key)]
        assert lines[index - 1].startswith("# "), f"{key} has no reason beside it"
        assert lines[index].split("=", 1)[1].strip(), key
