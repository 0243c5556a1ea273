"""Hostile and careless input to the dataset converters and the datasets they write (#17): each
case ends in a one-line error, a counted skip or a correct result, and nothing the user did not
name is deleted or replaced."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from array_record.python import array_record_module
from records_builder import write_split
from test_data_prep import records, rgb_image, tree, write_300wlp, write_dad_images
from train_support import standard_config

import data_prep.publish
import data_prep.w300lp
from data_prep import inspect as inspect_cli
from data_prep import synthetic
from data_prep.common import ConversionError
from data_prep.convert import convert
from data_prep.convert import main as convert_main
from hpe_jax.data.loaders import data_sharding, make_loader
from hpe_jax.data.source import num_records, split_source
from hpe_jax.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def _cli(data: Path, out: Path, *flags: str) -> list[str]:
    return [
        "--dataset",
        "300w_lp",
        "--data_dir",
        str(data),
        "--output_dir",
        str(out),
        "--no_progress",
        "--workers",
        "1",
        *flags,
    ]


@pytest.fixture
def two_sources(tmp_path: Path) -> tuple[Path, Path]:
    """Two 300W-LP folders: ``a`` with AFW_0, ``b`` with AFW_1 and AFW_2."""
    a, b = tmp_path / "a", tmp_path / "b"
    write_300wlp(a, "AFW/AFW_0", (1, 2, 3), seed=0)
    write_300wlp(b, "AFW/AFW_1", (4, 5, 6), seed=1)
    write_300wlp(b, "AFW/AFW_2", (7, 8, 9), seed=2)
    return a, b


def _never_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(data_dir: Path, item: str) -> None:
        raise AssertionError("a refused conversion loaded a sample")

    monkeypatch.setattr(data_prep.w300lp, "load_sample", load)


def _train_and_valid(source: Path, out: Path) -> dict[str, bytes]:
    """Converts ``source`` into the train and valid splits of ``out``; the tree of ``out``."""
    convert("300w_lp", source, out, split="train", progress=False)
    convert("300w_lp", source, out, split="valid", progress=False)
    return tree(out)


# --- replacing and foreign content ------------------------------------------------------------


def test_failed_overwrite_leaves_the_dataset_as_it_was(tmp_path, two_sources, monkeypatch, capsys):
    a, b = two_sources
    out = tmp_path / "out"
    before = _train_and_valid(a, out)
    real_dump = json.dump

    def dump(value, f, **kwargs):  # the disk fills up as the new dataset_info.json is written
        if "dataset_info" in Path(f.name).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f.name)
        return real_dump(value, f, **kwargs)

    monkeypatch.setattr(data_prep.publish.json, "dump", dump)
    assert convert_main(_cli(b, out, "--overwrite")) == 2
    assert _one_error_line(capsys) == (
        f"error: {out}: no space left on the device (disk or quota full); free space and rerun"
    )
    assert tree(out) == before  # the old split's files, metadata and info, nothing else
    assert os.listdir(out) == ["w300lp"]
    monkeypatch.undo()
    assert [r["name"] for r in records(out)] == ["AFW/AFW_0"]
    assert convert_main(_cli(b, out, "--overwrite")) == 0
    assert [r["name"] for r in records(out)] == ["AFW/AFW_1", "AFW/AFW_2"]
    assert [r["name"] for r in records(out, "valid")] == ["AFW/AFW_0"]


def test_publish_failing_at_its_last_rename_is_undone(tmp_path, two_sources, monkeypatch):
    a, b = two_sources
    out = tmp_path / "out"
    before = _train_and_valid(a, out)
    real_replace = os.replace

    def replace(source, target):  # the last step: the new dataset_info.json moves in
        if Path(target).name == "dataset_info.json" and ".tmp-" in Path(source).name:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))
        return real_replace(source, target)

    monkeypatch.setattr(data_prep.publish.os, "replace", replace)
    with pytest.raises(OSError, match="Input/output error"):
        convert("300w_lp", b, out, split="train", overwrite=True, progress=False)
    assert tree(out) == before and os.listdir(out) == ["w300lp"]


def test_foreign_content_is_never_touched(tmp_path, two_sources, monkeypatch, capsys):
    a, _ = two_sources
    out = tmp_path / "out"
    foreign = {
        "notes.txt": b"mine",
        ".notes-train.tmp-12/keep.txt": b"also mine",  # looks like a staging folder
        "w300lp/1.0.0/raw.txt": b"not a dataset",
    }
    for name, content in foreign.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(content)
    with monkeypatch.context() as patch:
        _never_load(patch)
        assert convert_main(_cli(a, out)) == 2
    assert _one_error_line(capsys) == (
        f"error: {out / 'w300lp' / '1.0.0'} holds raw.txt but no dataset_info.json: not a "
        "dataset written by python -m data_prep; not touched: choose another --output_dir or "
        "move it away"
    )
    assert tree(out) == foreign
    (out / "w300lp" / "1.0.0" / "raw.txt").unlink()
    assert convert_main(_cli(a, out)) == 0
    assert [r["name"] for r in records(out / "w300lp")] == ["AFW/AFW_0"]
    del foreign["w300lp/1.0.0/raw.txt"]
    assert {k: v for k, v in tree(out).items() if not k.startswith("w300lp/")} == foreign


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("features.json", lambda t: t.replace('"none"', '"zlib"', 1), "{v} holds a dataset with"),
        (
            "features.json",
            lambda t: t.replace('"float32"', '"float64"', 1),
            "{v}/features.json: feature 'box' is a Tensor (4,) float64; this hpe-jax reads",
        ),
        ("dataset_info.json", lambda t: t[1:], "{v}: unreadable dataset metadata (ParseError: "),
        ("metadata.json", lambda t: t[1:], "{v}/metadata.json: unreadable (Extra data: "),
        ("metadata.json", lambda t: f"[{t}]", "{v}/metadata.json: not a json object ([{'train': "),
    ],
)
def test_a_dataset_with_other_or_damaged_metadata_is_refused_before_any_work(
    tmp_path, two_sources, monkeypatch, capsys, file, edit, message
):
    a, b = two_sources
    out = tmp_path / "out"
    convert("300w_lp", a, out, progress=False)
    version = out / "w300lp" / "1.0.0"
    (version / file).write_text(edit((version / file).read_text()))
    before = tree(out)
    _never_load(monkeypatch)
    for flags in (("--split", "more"), ("--overwrite",)):
        assert convert_main(_cli(b, out, *flags)) == 2
        line = _one_error_line(capsys)
        assert line.startswith("error: " + message.replace("{v}", str(version))), line
        assert line.endswith("nothing converted: choose another --output_dir") or line.endswith(
            "nothing converted: move that dataset away or choose another --output_dir"
        )
        assert tree(out) == before


# --- two converters at once -------------------------------------------------------------------


STALLED_CONVERTER = """
import signal, sys
import data_prep.w300lp as reader
real = reader.load_sample
def load(data_dir, item):
    sample = real(data_dir, item)
    print("writing", flush=True)
    signal.pause()  # stalls mid-conversion until killed
reader.load_sample = load
from data_prep.convert import convert
convert("300w_lp", sys.argv[1], sys.argv[2], progress=False, workers=1)
"""


def test_two_converters_into_one_output(tmp_path, two_sources, caplog, capsys):
    a, b = two_sources
    out = tmp_path / "out"
    first = subprocess.Popen(
        [sys.executable, "-c", STALLED_CONVERTER, str(b), str(out)],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "writing"
        staging = out / f".w300lp-train.tmp-{first.pid}"
        assert staging.is_dir()
        before = tree(out)
        # A second converter, of another split too, is refused; the first one's files stay.
        assert convert_main(_cli(a, out, "--split", "other")) == 2
        assert _one_error_line(capsys) == (
            f"error: {out} is in use by pid {first.pid} on {socket.gethostname()} (python -m "
            "data_prep writing w300lp/train); not started (python -m data_prep writing "
            "w300lp/other): wait for it to end or stop it"
        )
        assert tree(out) == before
    finally:
        first.kill()
        first.wait()
    # The next converter takes the dead one's lock over and removes its leftovers, saying so.
    with caplog.at_level(logging.WARNING, logger="data_prep.convert"):
        meta = convert("300w_lp", a, out, progress=False)
    assert meta["num_records"] == 1 and os.listdir(out) == ["w300lp"]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "data_prep.convert"]
    assert warning == (
        f"removing {staging}, left by an interrupted conversion (pid {first.pid} on "
        f"{socket.gethostname()} (python -m data_prep writing w300lp/train))"
    )


# --- values as stored -------------------------------------------------------------------------


def _set_mat(path: Path, key: str, value: np.ndarray) -> None:
    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    mat[key] = value
    scipy.io.savemat(path, mat)


def test_hostile_values_are_skipped_or_filtered_and_listed(tmp_path):
    data = tmp_path / "300W_LP"
    cases = {
        "AFW/AFW_0": None,  # a good sample
        "AFW/AFW_1": ("Pose_Para", np.array([[0.1, 1e38, 0.0, 1, 1, 0, 1]])),
        "AFW/AFW_2": ("Pose_Para", np.array([[0.1 + 2j, 0.2, 0, 1, 1, 0, 1]])),
        "AFW/AFW_3": ("pt2d", np.linspace(1.0, 1e39, 136).reshape(2, 68)),  # inf as float32
        "AFW/AFW_4": ("Pose_Para", np.array([[0.0, np.radians(103.0), 0.0, 1, 1, 0, 1]])),
        "AFW/AFW_5": ("Pose_Para", np.array([[np.radians(-100.0), 0.0, 0.0, 1, 1, 0, 1]])),
    }
    for seed, (name, change) in enumerate(cases.items()):
        write_300wlp(data, name, (5, 5, 5), seed=seed)
        if change is not None:
            _set_mat(data / f"{name}.mat", *change)
    message = r"AFW/AFW_1.mat: Pose_Para: the pose is not finite in float32 degrees \(pitch, "
    with pytest.raises(ConversionError, match=message + r"yaw, roll radians \[0.1, 1e\+38, 0.0"):
        convert("300w_lp", data, tmp_path / "fail", progress=False)
    meta = convert("300w_lp", data, tmp_path / "skip", on_error="skip", progress=False)
    assert [r["name"] for r in records(tmp_path / "skip")] == ["AFW/AFW_0"]
    reasons = {e["name"]: e["reason"] for e in meta["skipped"] + meta["filtered"]}
    assert meta["num_skipped"] == 3 and meta["num_filtered"] == 2
    assert reasons["AFW/AFW_1"].startswith("Pose_Para: the pose is not finite in float32")
    assert reasons["AFW/AFW_2"] == "Pose_Para: complex values, expected real numbers"
    assert reasons["AFW/AFW_3"] == "pt2d: not finite in float32 (|value| up to 1e+39)"
    assert reasons["AFW/AFW_4"].startswith("outside the angle bins' range, |angle| < 100 (yaw 103")
    assert reasons["AFW/AFW_5"].startswith("outside the angle bins' range")
    info = (tmp_path / "skip" / "w300lp" / "1.0.0" / "metadata.json").read_text()
    assert "Infinity" not in info and "NaN" not in info


@pytest.mark.filterwarnings("error:overflow encountered:RuntimeWarning")
def test_biwi_pose_beyond_float32_is_a_bad_sample_naming_its_value(tmp_path):
    data = tmp_path / "biwi"
    data.mkdir()
    np.savez(data / "0.npz", image=rgb_image(0, 8), pose=np.array([1.0, 2.0, 3.0]))
    np.savez(data / "1.npz", image=rgb_image(1, 8), pose=np.array([2.0, -1e39, 3.0]))
    with pytest.raises(ConversionError, match=r"1.npz: pose: not finite in float32 \(\|value\| up"):
        convert("biwi", data, tmp_path / "fail", progress=False, workers=1)
    meta = convert("biwi", data, tmp_path / "skip", on_error="skip", progress=False, workers=1)
    assert [r["name"] for r in records(tmp_path / "skip")] == ["0"]
    assert [s["reason"] for s in meta["skipped"]] == [
        "pose: not finite in float32 (|value| up to 1e+39)"
    ]


def test_training_refuses_a_split_kept_with_poses_the_bins_cannot_label(tmp_path):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (5, 5, 5), seed=0)
    write_300wlp(data, "AFW/AFW_1", (103, 5, 5), seed=1)
    out = tmp_path / "out"
    convert("300w_lp", data, out, max_abs_angle=None, progress=False)  # --no_angle_filter
    config = standard_config(out, batch_size=1, data__worker_count=0)
    with pytest.raises(UserError, match=r"split 'train': yaw ranges over \[5, 103\] degrees, but"):
        make_loader(config, "train", data_sharding())
    metadata = out / "w300lp" / "1.0.0" / "metadata.json"
    _edit_json(metadata, lambda m: m["train"].update(angle_ranges={"yaw": "wide"}))
    with pytest.raises(UserError, match=r"metadata.json: angle_ranges of split 'train' unread"):
        make_loader(config, "train", data_sharding())
    convert("300w_lp", data, out, split="filtered", progress=False)
    config.data.train_split = "filtered"
    make_loader(config, "train", data_sharding()).close()  # the filtered split trains


def test_duplicate_list_lines_are_an_error_in_both_modes(tmp_path, capsys):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (1, 2, 3), seed=0)
    write_300wlp(data, "AFW/AFW_1", (1, 2, 3), seed=1)
    names = tmp_path / "list.txt"
    names.write_text("AFW/AFW_0\nAFW/AFW_1\n\nAFW//AFW_0\n")
    for mode in ("fail", "skip"):
        flags = ("--filename_list", str(names), "--on_error", mode)
        assert convert_main(_cli(data, tmp_path / "out", *flags)) == 2
        assert _one_error_line(capsys) == (
            f"error: {names}: 1 duplicate line(s), which would give duplicate records: line 4 "
            "repeats line 1 ('AFW//AFW_0'); remove them"
        )
    assert not (tmp_path / "out" / "w300lp").exists()


def test_duplicate_dad_entries_are_an_error(tmp_path, capsys):
    data = tmp_path / "dad"
    write_dad_images(data)
    entry = {"img_path": "images/a.png", "bbox": [1, 1, 5, 5], "R": np.diag([1, -1, -1]).tolist()}
    entries = [entry, dict(entry, img_path="images/b.png"), dict(entry, img_path="./images/a.png")]
    (data / "train.json").write_text(json.dumps(entries))
    argv = ["--dataset", "dad", "--data_dir", str(data), "--output_dir", str(tmp_path / "out"),
            "--no_progress", "--workers", "1", "--on_error", "skip"]  # fmt: skip
    assert convert_main(argv) == 2
    assert _one_error_line(capsys) == (
        f"error: {data / 'train.json'}: 1 duplicate entry(ies), which would give duplicate "
        "records: entry 2 repeats entry 0 ('./images/a.png'); remove them"
    )
    assert not (tmp_path / "out").exists()


def test_more_record_files_than_records_is_one_line(tmp_path, capsys):
    data = tmp_path / "300W_LP"
    write_300wlp(data, "AFW/AFW_0", (1, 2, 3), seed=0)
    write_300wlp(data, "AFW/AFW_1", (50, 2, 3), seed=1)
    out = tmp_path / "out"
    assert convert_main(_cli(data, out, "--num_shards", "3")) == 2
    assert _one_error_line(capsys) == (
        f"error: --num_shards 3: more record files than the 2 samples listed in {data}; "
        "choose at most 2"
    )
    assert convert_main(_cli(data, out, "--num_shards", "2", "--max_abs_angle", "10")) == 2
    assert _one_error_line(capsys) == (
        "error: --num_shards 2: more record files than the 1 records left to write (0 skipped, "
        "1 filtered); choose at most 1"
    )
    assert os.listdir(out) == []


# --- the datasets: edited metadata, damaged files ---------------------------------------------


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A dataset of 4 records in 2 files; returns its version folder."""
    return write_split(tmp_path / "data", "train", [(1.0, 2.0, 3.0)] * 4, num_shards=2)


def _edit_json(path: Path, edit) -> None:
    value = json.loads(path.read_text())
    edit(value)
    path.write_text(json.dumps(value))


def test_edited_shard_lengths_are_noticed_everywhere(dataset, capsys):
    _edit_json(dataset / "dataset_info.json", lambda i: i["splits"][0].update(shardLengths=["2"]))
    message = r"test_records-train.array_record-00000-of-00001: record file of split 'train' miss"
    with pytest.raises(UserError, match=message):
        num_records(dataset, "train")
    with pytest.raises(UserError, match=message):
        split_source(dataset, "train")
    assert inspect_cli.main([str(dataset)]) == 2
    assert "00000-of-00001: record file of split 'train' missing" in _one_error_line(capsys)
    _edit_json(
        dataset / "dataset_info.json", lambda i: i["splits"][0].update(shardLengths=["1", "3"])
    )
    assert inspect_cli.main([str(dataset)]) == 2
    assert _one_error_line(capsys) == (
        f"error: {dataset}/test_records-train.array_record-00000-of-00002: holds 2 records, "
        "dataset_info.json says 1: the metadata was edited or the file replaced; convert the "
        "split again"
    )


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("{", "unreadable (Expecting property name enclosed in double quotes"),
        ("[1]", "unreadable (cannot convert dictionary update sequence element"),
        ('{"train": 5}', "not what python -m data_prep writes (split 'train': 5)"),
        ('{"train": {"skipped": 1}}', "not what python -m data_prep writes (split 'train': {"),
    ],
)
def test_damaged_split_metadata_is_one_line_everywhere(dataset, capsys, metadata, message):
    (dataset / "metadata.json").write_text(metadata)
    assert inspect_cli.main([str(dataset)]) == 2
    assert _one_error_line(capsys).startswith(f"error: {dataset}/metadata.json: {message}")
    config = standard_config(dataset, batch_size=1, data__worker_count=0)
    with pytest.raises(UserError, match=re.escape(f"{dataset}/metadata.json: {message}")):
        make_loader(config, "train", data_sharding())


def test_inspect_shows_the_record_count_of_the_files_not_an_edited_one(dataset, capsys):
    (dataset / "metadata.json").write_text('{"train": {"num_records": 99, "split": "x"}}')
    assert inspect_cli.main([str(dataset), "--num", "0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["num_records"], summary["split"]) == (4, "train")


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        (
            "features.json",
            lambda f: f["featuresDict"]["features"]["pose"]["tensor"].update(dtype="float64"),
            "features.json: feature 'pose' is a Tensor (3,) float64; this hpe-jax reads a Tensor "
            "(3,) float32",
        ),
        (
            "features.json",
            lambda f: f["featuresDict"]["features"]["rotation"]["tensor"].update(
                shape={"dimensions": ["9"]}
            ),
            "features.json: feature 'rotation' is a Tensor (9,) float32; this hpe-jax reads a "
            "Tensor (3, 3) float32",
        ),
        (
            "features.json",
            lambda f: f["featuresDict"]["features"].update(
                pose=f["featuresDict"]["features"]["name"]
            ),
            "features.json: feature 'pose' is a Text () object; this hpe-jax reads a Tensor "
            "(3,) float32",
        ),
        (
            "dataset_info.json",
            lambda i: i.update(fileFormat="tfrecord"),
            "records in tfrecord files; this hpe-jax reads array_record files",
        ),
        (
            "dataset_info.json",
            lambda i: i.update(version="2.0.0"),
            "dataset version 2.0.0; this hpe-jax reads 1.0.0",
        ),
    ],
)
def test_a_dataset_this_code_cannot_read_is_refused(dataset, capsys, file, edit, message):
    _edit_json(dataset / file, edit)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        num_records(dataset, "train")
    assert inspect_cli.main([str(dataset)]) == 2
    assert message in _one_error_line(capsys)


def test_damaged_record_file_is_named_by_every_reader(dataset, capsys):
    second = dataset / "test_records-train.array_record-00001-of-00002"
    second.write_bytes(second.read_bytes()[:-40])
    with pytest.raises(UserError, match=f"{second}: damaged record file"):
        num_records(dataset, "train")
    assert inspect_cli.main([str(dataset), "--num", "1"]) == 2
    assert _one_error_line(capsys).startswith(f"error: {second}: damaged record file")


# --- failed writes ----------------------------------------------------------------------------


def _writer_failing_with(monkeypatch: pytest.MonkeyPatch, make_error) -> None:
    """array_record's writer (as TFDS uses it) fails: ``make_error(path)`` raises."""
    real = array_record_module.ArrayRecordWriter

    def writer(path: str, options: str):
        return make_error(path) or real(path, options)

    monkeypatch.setattr(array_record_module, "ArrayRecordWriter", writer)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_while_writing_records_is_one_line(tmp_path, two_sources, monkeypatch, capsys):
    a, b = two_sources
    out = tmp_path / "out"
    convert("300w_lp", a, out, progress=False)
    before = tree(out)
    # The record file is a link to /dev/full: every write fails with the kernel's ENOSPC.
    _writer_failing_with(monkeypatch, lambda path: os.symlink("/dev/full", path))
    for flags in (("--split", "more"), ("--overwrite",)):
        assert convert_main(_cli(b, out, *flags)) == 2
        assert _one_error_line(capsys) == (
            f"error: {out}: no space left on the device (disk or quota full); free space and rerun"
        )
        assert tree(out) == before and os.listdir(out) == ["w300lp"]


def test_read_only_output_is_one_line_naming_it(tmp_path, two_sources, monkeypatch, capsys):
    a, _ = two_sources
    out = tmp_path / "out"

    def read_only(path: str) -> None:  # array_record's message for a read-only file system
        raise RuntimeError(
            f"open() failed: {os.strerror(errno.EROFS)}; opening {path}; Failed to create the "
            "file header"
        )

    _writer_failing_with(monkeypatch, read_only)
    assert convert_main(_cli(a, out)) == 2
    assert _one_error_line(capsys) == (
        f"error: {out}: not writable (Read-only file system); choose a folder you may write to"
    )
    assert os.listdir(out) == []
    monkeypatch.undo()
    real_open = os.open

    def locked_open(path, flags, *args, **kwargs):  # the folder itself refuses new files
        if Path(path).parent == out:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", locked_open)
    assert convert_main(_cli(a, out)) == 2
    assert _one_error_line(capsys) == (
        f"error: {out}: not writable (Permission denied); choose a folder you may write to"
    )


# --- entry points -----------------------------------------------------------------------------


def test_synthetic_cli_never_replaces_files(tmp_path, capsys):
    out = tmp_path / "raw"

    def run(fmt: str, seed: int) -> int:
        args = ["--format", fmt, "--num", "2", "--out", str(out), "--image_size", "16"]
        return synthetic.main([*args, "--seed", str(seed)])

    assert run("aflw2000", 0) == 0
    before = tree(out)
    assert run("aflw2000", 1) == 2  # other samples under the same names
    assert _one_error_line(capsys) == (
        f"error: {out} already holds aflw2000_list.txt and 4 more of the 5 files this would "
        "write: not replaced; choose another --out, or remove those files first"
    )
    assert tree(out) == before
    assert run("300w_lp", 0) == 0  # another format's files beside them
    assert {k: v for k, v in tree(out).items() if k in before} == before


def test_entry_points_end_in_one_line_with_status_2_or_a_traceback(tmp_path, capsys):
    missing = str(tmp_path / "missing")
    assert convert_main(_cli(tmp_path / "nope", tmp_path / "out")) == 2
    assert _one_error_line(capsys).endswith("nope: data dir not found")
    with pytest.raises(ConversionError, match="data dir not found"):
        convert_main(_cli(tmp_path / "nope", tmp_path / "out", "--verbose"))
    assert inspect_cli.main([missing]) == 2
    assert "no TFDS dataset there" in _one_error_line(capsys)
    with pytest.raises(FileNotFoundError):
        inspect_cli.main([missing, "--verbose"])
    args = ["--format", "biwi", "--num", "1", "--out", str(tmp_path), "--image_size", "8"]
    assert synthetic.main(args) == 2
    assert _one_error_line(capsys) == "error: image_size must be >= 16, got 8"
    with pytest.raises(UserError, match="image_size must be >= 16"):
        synthetic.main([*args, "--verbose"])
