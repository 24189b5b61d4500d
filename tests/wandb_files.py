"""Reads W&B offline run files (``run-<id>.wandb``) back into wandb's own protobuf records.

wandb 0.31 moved its file reader into the Go core, so this is the LevelDB-style log framing the
file uses (a 7-byte ``:W&B`` header, 32 KiB blocks of crc32 / length / type-framed chunks) around
``wandb.proto.wandb_internal_pb2.Record`` — wandb's own record type does the decoding.
"""

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

_HEADER = 7
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path) -> list:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pending, pos = [], b"", _HEADER
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            break
        if kind == _FULL:
            pending = chunk
        elif kind == _FIRST:
            pending = chunk
            continue
        elif kind == _MIDDLE:
            pending += chunk
            continue
        elif kind == _LAST:
            pending += chunk
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        out.append(record)
    return out


def history(path: Path) -> list[dict]:
    """Every ``wandb.log`` row of the run, keys flattened as W&B stores them."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    "/".join(item.nested_key) if item.nested_key else item.key: json.loads(
                        item.value_json
                    )
                    for item in record.history.item
                }
            )
    return rows


def config(path: Path) -> dict:
    """The run config: the run record's (``wandb.init(config=...)``), then each config update."""
    values = {}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind in ("run", "config"):
            updates = record.run.config.update if kind == "run" else record.config.update
            for item in updates:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                values[key] = json.loads(item.value_json)
    return values
