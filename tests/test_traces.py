"""Trace loading: formats, column names, time units, the shipped traces, every malformed input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.errors import ConfigError
from experiments.workloads.trace_loader import TRACES, Columns, TraceError, load_trace

COLS = Columns(arrival="t", prompt="in", output="out")


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_traces_load_in_full_with_their_documented_sizes():
    conv = load_trace("azure-conv")
    code = load_trace("azure-code")
    assert (len(conv), len(code)) == (19366, 8819)
    assert conv.arrival[0] == 0.0 and np.all(np.diff(conv.arrival) >= 0)
    # first rows of the conversation file: 18:15:46.6805900 (374, 44), then 18:15:50.9951690 (396, 109)
    assert conv.prompt_len[:2].tolist() == [374, 396] and conv.output_len[:2].tolist() == [44, 109]
    assert conv.arrival[1] == pytest.approx(50.995169 - 46.68059, abs=1e-6)
    assert conv.line[:2].tolist() == [2, 3]
    assert np.median(conv.prompt_len) == 1020 and np.median(conv.output_len) == 129
    assert 3400 < conv.span < 3600  # ~58 minutes
    assert set(TRACES) == {"azure-conv", "azure-code"}


def test_csv_with_custom_columns_and_numeric_seconds(tmp_path):
    path = write(tmp_path, "t.csv", "out,t,extra,in\n5,10.5,x,100\n7,12.0,y,200\n1,11,z,3\n")
    trace = load_trace(path, COLS, "s")
    # sorted by arrival, relative to the first (10.5 s)
    assert trace.arrival.tolist() == [0.0, 0.5, 1.5]
    assert trace.prompt_len.tolist() == [100, 3, 200]
    assert trace.output_len.tolist() == [5, 1, 7]
    assert trace.line.tolist() == [2, 4, 3]


def test_milliseconds_are_converted_to_seconds(tmp_path):
    path = write(tmp_path, "t.csv", "t,in,out\n1000,1,1\n3500,1,1\n")
    assert load_trace(path, COLS, "ms").arrival.tolist() == [0.0, 2.5]
    assert load_trace(path, COLS, "s").arrival.tolist() == [0.0, 2500.0]


def test_datetime_arrivals_with_seven_fraction_digits(tmp_path):
    path = write(tmp_path, "t.csv", "t,in,out\n2023-11-16 18:15:46.6805900,1,1\n2023-11-16 18:16:47.0000000,1,1\n"
                                    "2023-11-17 00:00:00,1,1\n")
    trace = load_trace(path, COLS)
    expected = [0.0, 60.31941, (24 * 3600 - (18 * 3600 + 15 * 60 + 46.68059))]
    assert trace.arrival.tolist() == pytest.approx(expected, abs=1e-6)


def test_jsonl_with_numbers_and_blank_lines(tmp_path):
    lines = [{"t": 2.0, "in": 10, "out": 3}, {"t": 0.5, "in": 20, "out": 4, "note": "x"}]
    path = write(tmp_path, "t.jsonl", json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n")
    trace = load_trace(path, COLS, "s")
    assert trace.arrival.tolist() == [0.0, 1.5]
    assert trace.prompt_len.tolist() == [20, 10]
    assert trace.line.tolist() == [3, 1]


def test_jsonl_datetime_strings(tmp_path):
    path = write(tmp_path, "t.jsonl", '{"t": "2023-11-16 18:15:46.5", "in": 1, "out": 1}\n'
                                      '{"t": "2023-11-16 18:15:47", "in": 1, "out": 1}\n')
    assert load_trace(path, COLS).arrival.tolist() == pytest.approx([0.0, 0.5])


@pytest.mark.parametrize("text, message", [
    ("t,in\n1,2\n", "column 'out' (output) not found; columns present: t, in"),
    ("t,in,out\n1,2,3\nabc,2,3\n", "line 3, column 't': 'abc' is not a number"),
    ("t,in,out\n1,2,3\n2,x,3\n", "line 3, column 'in': 'x' is not a token count"),
    ("t,in,out\n1,2,3\n2,2,-4\n", "line 3, column 'out': token count '-4' must be in [1, 100,000,000]"),
    ("t,in,out\n1,2,3\n2,2,0\n", "line 3, column 'out': token count '0' must be in [1, 100,000,000]"),
    ("t,in,out\n1,2,3\n2,2.5,3\n", "line 3, column 'in': '2.5' is not a whole token count"),
    ("t,in,out\n1,2,3\n-2,2,3\n", "line 3, column 't': arrival '-2' is negative"),
    ("t,in,out\n1,2,3\n2,,3\n", "line 3, column 'in': '' is not a token count"),
    ("t,in,out\n1,2,3\n2,3\n", "line 3: 2 fields, the header has 3"),
    ("t,in,out\n1,2,3\nnan,2,3\n", "line 3, column 't': 'nan' is not a number"),
    ("t,in,out\n2023-11-16 18:15:46,2,3\n2023-13-16 18:15:46,2,3\n", "line 3, column 't': '2023-13-16 18:15:46' is not a datetime"),
    ("t,in,out\n", "no requests in the file"),
    ("", "empty file"),
])
def test_every_malformed_csv_names_file_line_and_column(tmp_path, text, message):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(TraceError) as err:
        load_trace(path, COLS, "s")
    assert str(path) in str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize("text, message", [
    ('{"t": 1, "in": 2, "out": 3}\n{"t": 2, "in": 2}\n', "line 2: column 'out' (output) not found; columns present: t, in"),
    ('{"t": 1, "in": 2, "out": 3}\n{"t": 2, "in": 2, "out": 3\n', "line 2: not valid JSON"),
    ('[1, 2, 3]\n', "line 1: expected a JSON object, got list"),
    ('{"t": 1, "in": 2, "out": 3}\n{"t": 2, "in": true, "out": 3}\n', "line 2, column 'in': True is not a token count"),
    ('{"t": 1, "in": 2, "out": 3}\n{"t": null, "in": 2, "out": 3}\n', "line 2, column 't': None is not a number"),
    ('{"t": "2023-11-16 18:15:46", "in": 2, "out": 3}\n{"t": 5, "in": 2, "out": 3}\n',
     "line 2, column 't': 5 is not a datetime like the first row's"),
])
def test_every_malformed_jsonl_names_file_line_and_column(tmp_path, text, message):
    path = write(tmp_path, "bad.jsonl", text)
    with pytest.raises(TraceError) as err:
        load_trace(path, COLS, "s")
    assert str(path) in str(err.value) and message in str(err.value)


def test_unknown_trace_name_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="'azure-chat' is neither a registered trace \\(valid: azure-conv, azure-code\\)"):
        load_trace("azure-chat")


def test_unknown_time_unit_and_format(tmp_path):
    path = write(tmp_path, "t.csv", "t,in,out\n1,2,3\n")
    with pytest.raises(ConfigError, match="time_unit='us'; valid: s, ms"):
        load_trace(path, COLS, "us")
    with pytest.raises(ConfigError, match="trace format 'parquet'; valid: csv, jsonl"):
        load_trace(path, COLS, "s", fmt="parquet")
