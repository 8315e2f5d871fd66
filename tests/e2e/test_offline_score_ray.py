"""``python -m app.score --engine ray INPUT_DIR OUTPUT_DIR`` against the local engine, on folders
made from the real data, in one local Ray (``ray.init(num_cpus=2)``) that the module shares.

The key that pairs the engines' rows is their order: the ray engine names each file it writes
after the input file and the first line it holds, so its files in name order are the input's
rows in order, which the local engine gives file by file. The input columns must then match
as text (which proves the pairing), the warnings exactly, the dollars to 1e-6 relative.
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from offline.score.cli import main
from tests.support.project import ROOT
from tests.support.scoring import BAD_CELLS

# Ray Data's DataContext() sets three of its own deprecated fields (use_push_based_shuffle,
# use_polars, use_arrow_tensor_v2; ray 2.60): DeprecationWarnings issued in ray.data.context.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

FILES, ROWS, CHUNK = 3, 2000, "512"  # 4 blocks a file, the last joined to another file's
# (data row, how its line is broken): records the reader refuses (field "row"), not the validator
BROKEN = [(100, "quote"), (200, "extra"), (300, "short")]
VALUES = ["house_value", "house_value_low", "house_value_high"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def run_main(*args: str) -> Run:
    """``python -m app.score ARGS`` in this process (so every run shares the module's Ray)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([*args, "--no-progress"])
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def ray_session(artifacts: Path) -> Iterator[None]:
    """One local Ray of 2 CPUs, and the settings the CLI reads, for the whole module."""
    ray = pytest.importorskip("ray", reason="the ray engine needs the scale extra")
    from offline.score.ray_engine import connect

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOUSING_ARTIFACTS", str(artifacts))
        mp.setenv("HOUSING_DEVICE", "cpu")
        mp.delenv("RAY_ADDRESS", raising=False)
        assert connect(num_cpus=2)
        try:
            yield
        finally:
            ray.shutdown()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, housing_frame: pd.DataFrame) -> Path:
    """csv/: FILES files of ROWS rows, each with test_score's BAD_CELLS, BROKEN lines and a
    warning; parquet/: the same rows typed, with one invalid value each."""
    root = tmp_path_factory.mktemp("score-ray")
    (root / "csv").mkdir()
    (root / "parquet").mkdir()
    for k in range(FILES):
        rows = housing_frame.iloc[k * ROWS : (k + 1) * ROWS].reset_index(drop=True)
        rows.assign(latitude=rows["latitude"].where(rows.index != 7 + k, 95.0)).to_parquet(
            root / "parquet" / f"part-{k}.parquet"
        )
        text = rows.astype(object)
        for row, column, cell, _ in BAD_CELLS:
            text.loc[row + k, column] = cell
        text.loc[60, "median_income"] = 15.0  # valid, above the training range: a warning
        path = root / "csv" / f"part-{k}.csv"
        lines = text.to_csv(index=False).splitlines()
        for row, how in BROKEN:
            lines[row + k + 1] = broken(lines[row + k + 1], how)  # data row i: line i + 2
        path.write_text("\n".join(lines) + "\n")
    return root


def broken(line: str, how: str) -> str:
    if how == "quote":  # the second cell opens a quote that never closes
        return line.replace(",", ',"', 1)
    return line + ",1" if how == "extra" else line.rsplit(",", 1)[0]


def local_engine(inputs: list[Path], out: Path, suffix: str) -> tuple[pd.DataFrame, list[list]]:
    """Each input through the local engine: their outputs in order, and their errors with the
    file's name in front (the ray engine's report)."""
    frames, errors = [], []
    for path in inputs:
        target = out / f"{path.stem}{suffix}"
        done = run_main(str(path), str(target))
        assert done.code in (0, 3), done.stderr
        frames.append(read(target))
        with target.with_name(target.name + ".errors.csv").open() as fh:
            errors += [[path.name, *row] for row in list(csv.reader(fh))[1:]]
    return pd.concat(frames, ignore_index=True), errors


def read(path: Path) -> pd.DataFrame:
    """Every cell as the text it is (CSV) or its value (Parquet)."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def ray_output(folder: Path) -> pd.DataFrame:
    names = sorted(os.listdir(folder))
    assert names and not [n for n in names if n.startswith(".")]  # no partial file left
    return pd.concat([read(folder / n) for n in names], ignore_index=True)


def assert_same_answers(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    pd.testing.assert_frame_equal(got.drop(columns=VALUES), want.drop(columns=VALUES))
    np.testing.assert_allclose(
        got[VALUES].to_numpy(dtype=float), want[VALUES].to_numpy(dtype=float), rtol=1e-6
    )


@pytest.fixture(scope="module")
def csv_run(ray_session: None, folders: Path) -> Run:
    return run_main(
        "--engine", "ray", str(folders / "csv"), str(folders / "csv-out"), "--chunk-rows", CHUNK
    )


def test_a_csv_folder_is_scored_as_the_local_engine_scores_each_file(
    csv_run: Run, folders: Path, tmp_path: Path
) -> None:
    assert csv_run.code == 3, csv_run.stderr  # some rows invalid, the rest scored
    report = folders / "csv-out.errors.csv"
    refused = FILES * (len(BAD_CELLS) + len(BROKEN))
    assert (
        f"{FILES * ROWS:,} rows read: {FILES * ROWS - refused:,} scored, {refused} refused "
        f"(see {report}); written to {folders / 'csv-out'} in " in csv_run.stdout
    )
    assert "Traceback" not in csv_run.stderr
    inputs = sorted((folders / "csv").iterdir())
    want, want_errors = local_engine(inputs, tmp_path, ".csv")
    got = ray_output(folders / "csv-out")
    assert_same_answers(got, want)
    assert (got["warnings"] != "").any()  # the warnings compared are not all empty
    # Named after the input file and the first line each holds (CSV: the header is line 1).
    names = sorted(os.listdir(folders / "csv-out"))
    assert names[0] == "part-0.0000000002.csv"
    assert all(re.fullmatch(r"part-[0-2]\.\d{10}\.csv", name) for name in names)

    with report.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "line", "field", "message"]
    assert rows[1:] == want_errors  # the same rows, lines, fields and messages
    # Data row i is line i + 2 of its file (the header is line 1), as the local engine says.
    assert [(r[0], int(r[1]), r[2]) for r in rows[1:]] == [
        (f"part-{k}.csv", line, field)
        for k in range(FILES)
        for line, field in sorted(
            [(row + k + 2, field) for row, *_, field in BAD_CELLS]
            + [(row + k + 2, "row") for row, _ in BROKEN]
        )
    ]
    file, line, field, message = rows[1]
    assert f"{file} line {line}: {field}: {message}" in csv_run.stderr


def test_parquet_in_gives_parquet_out_with_the_local_answers(
    ray_session: None, folders: Path, tmp_path: Path
) -> None:
    out = folders / "parquet-out"
    done = run_main("--engine", "ray", str(folders / "parquet"), str(out), "--chunk-rows", CHUNK)
    assert done.code == 3, done.stderr
    assert f"{FILES * ROWS:,} rows read: {FILES * ROWS - FILES:,} scored, {FILES} refused" in (
        done.stdout
    )
    assert all(name.endswith(".parquet") for name in os.listdir(out))
    want, want_errors = local_engine(sorted((folders / "parquet").iterdir()), tmp_path, ".parquet")
    got = ray_output(out)
    assert_same_answers(got, want)
    assert list(got.dtypes) == list(want.dtypes)
    with (folders / "parquet-out.errors.csv").open() as fh:
        rows = list(csv.reader(fh))[1:]
    assert rows == want_errors
    # Parquet rows are numbered from 1, as the local engine numbers them.
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (f"part-{k}.parquet", str(7 + k + 1), "latitude") for k in range(FILES)
    ]


def test_a_file_with_a_column_named_twice_refuses_the_folder_as_the_local_engine_does(
    ray_session: None, folders: Path, tmp_path: Path
) -> None:
    twice = tmp_path / "twice"
    twice.mkdir()
    (twice / "part-0.csv").write_bytes((folders / "csv" / "part-0.csv").read_bytes())
    lines = (folders / "csv" / "part-1.csv").read_text().splitlines()
    doubled = [lines[0] + ",latitude", *(line + ",1" for line in lines[1:])]
    (twice / "part-1.csv").write_text("\n".join(doubled) + "\n")
    done = run_main("--engine", "ray", str(twice), str(tmp_path / "out"))
    local = run_main(str(twice / "part-1.csv"), str(tmp_path / "local.csv"))
    assert done.code == local.code == 1
    assert "names the column 'latitude' twice" in done.stderr and "Hint:" in done.stderr
    assert not (tmp_path / "out").exists()  # refused before any scoring
    with (tmp_path / "out.errors.csv").open() as fh:
        rows = list(csv.reader(fh))
    with (tmp_path / "local.csv.errors.csv").open() as fh:
        local_rows = list(csv.reader(fh))
    assert rows == [["file", "line", "field", "message"], ["part-1.csv", *local_rows[1]]]
    assert local_rows[1][:2] == ["1", "header"]


def test_no_artifacts_is_the_local_engines_error_not_a_traceback(
    ray_session: None, folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOUSING_ARTIFACTS", str(tmp_path / "nothing"))
    done = run_main("--engine", "ray", str(folders / "csv"), str(tmp_path / "out"))
    local = run_main(str(folders / "csv" / "part-0.csv"), str(tmp_path / "out.csv"))
    assert done.code == local.code == 1
    assert done.stderr.startswith("error: ") and "Hint:" in done.stderr
    assert done.stderr == local.stderr
    assert "Traceback" not in done.stderr


def test_a_folder_of_both_kinds_is_refused_with_a_hint(
    ray_session: None, folders: Path, tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("csv/part-0.csv", "parquet/part-1.parquet"):
        (mixed / Path(name).name).write_bytes((folders / name).read_bytes())
    done = run_main("--engine", "ray", str(mixed), str(tmp_path / "out"))
    assert done.code == 1
    assert "has both CSV and Parquet files (part-0.csv, part-1.parquet)" in done.stderr
    assert "Hint: one kind per folder" in done.stderr


def test_without_the_scale_extra_the_local_engine_works_and_ray_says_what_to_install(
    artifacts: Path, folders: Path, tmp_path: Path
) -> None:
    # The serving image: no ray. The local engine must not import it; the ray engine says how
    # to get it, in a process of its own (this one has ray imported).
    script = (
        "import sys\n"
        "sys.modules['ray'] = None  # import ray raises ImportError, as when it is missing\n"
        "from offline.score.cli import main\n"
        f"local = main([{str(folders / 'csv' / 'part-0.csv')!r}, {str(tmp_path / 'o.csv')!r},"
        " '--no-progress'])\n"
        "assert local == 3, local\n"
        "assert sys.modules['ray'] is None and 'ray.data' not in sys.modules\n"
        f"sys.exit(main(['--engine', 'ray', {str(folders / 'csv')!r}, {str(tmp_path / 'o')!r}]))\n"
    )
    env = {**os.environ, "HOUSING_ARTIFACTS": str(artifacts), "HOUSING_DEVICE": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.endswith(
        "error: the ray engine needs the scale extra: pip install 'housing-inference[scale]'\n"
    )
