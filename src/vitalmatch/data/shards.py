"""Sharded datasets: the block plan of a directory run, the shard files and the directory index.

Stage: data (storage across machines). Input: a generation run's size (``n_presets`` sampled
presets to keep, ``m`` ingested real presets, ``S`` presets per shard) or a directory of shard
files. Output: the run's :class:`Block` plan (which presets each ``shard-NNNNN.h5`` holds), the
blocks one array task writes (``--shard K/N``), and ``DIR/index.json``: the checked list of
shards that :class:`~vitalmatch.data.reader.DatasetReader` opens as one dataset.

The plan. A run of ``n`` sampled presets in shards of ``S`` is ``B = ceil(n / S)`` blocks (at
least ``ceil(m / S)`` when real presets are ingested, and at least one). Block ``b`` is the
complete dataset file ``shard-{b:05d}.h5`` (today's schema, writer, journal and resume) and keeps
``S`` sampled presets (the last block the rest). Its sampled presets come from the global stream
starting at position ``b * STREAM_STRIDE``: preset ``i`` depends only on ``(seed, i)``, so block
``b`` seeks there and needs nothing from any other block. Block 0 therefore equals the first
``S`` presets of a single-file run with the same seed. Ingested presets are split in contiguous
ranges of ``ceil(m / B)``: block ``b`` renders ingested positions ``[b*c, (b+1)*c)`` before its
sampled ones (a block's ingested presets are all of its range, kept or not, so its end does not
depend on any other block).

``--shard K/N`` writes exactly the blocks ``b`` with ``b % N == K``, so N array tasks of any
scheduler (``$SLURM_ARRAY_TASK_ID``, ``$JOB_COMPLETION_INDEX``) write disjoint blocks whose union
is the one-machine run, row for row.

The index. ``index.json`` (written atomically) lists every shard with its block, rows, presets,
completeness, size and mtime, plus the run's settings and schema version. :func:`verified_shards`
trusts it while every listed file still has its size and mtime; otherwise it rescans the files.
:func:`check_shards` refuses (one line, :class:`ShardError`) a missing block, two files for one
block or one preset in two shards, an unfinished shard, and shards of different runs (seed, tier,
schema, registry, wavetables, render or other content settings).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Sampled presets of block ``b`` start at stream position ``b * STREAM_STRIDE``; a block never
#: tries 2**32 presets, and ``metadata/preset_index`` (int64) holds ``b * 2**32 + i`` for any
#: block number below 2**31.
STREAM_STRIDE = 2**32
#: Kept presets per shard when a directory output gives no ``--shard-size``.
DEFAULT_SHARD_SIZE = 1000
INDEX_NAME = "index.json"
INDEX_FORMAT = 1
SHARD_GLOB = "shard-*.h5"
_SHARD_RE = re.compile(r"^shard-(\d{5,})\.h5$")
#: Root attributes that differ between the shards of one run (everything else must agree).
PER_SHARD_ATTRS = ("shard_block", "stream_start")


class ShardError(ValueError):
    """A directory of shards is incomplete or inconsistent (the message is one line)."""


def shard_name(block: int) -> str:
    """The file name of block ``block``: ``shard-00007.h5``."""
    return f"shard-{block:05d}.h5"


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N`` (``--shard``); ``ValueError`` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"--shard must be K/N (e.g. 3/10, 0-based K), got {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    check_shard((k, n))
    return k, n


def check_shard(shard: Any) -> None:
    """``ValueError`` unless ``shard`` is ``(K, N)`` integers with ``0 <= K < N``."""
    ok = (
        isinstance(shard, tuple | list)
        and len(shard) == 2
        and all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in shard)
    )
    if not ok or not 0 <= shard[0] < shard[1]:
        raise ValueError(f"--shard must be K/N with 0 <= K < N, got {shard!r}")


@dataclass(frozen=True)
class Block:
    """One block of a directory run: what ``shard-{block:05d}.h5`` holds.

    Attributes:
        block: b, 0-based.
        blocks: B, blocks of the whole run.
        size: S, the run's shard size (kept sampled presets per full block).
        quota: sampled presets this block keeps (S, the last block the rest; 0 in a run that
            only ingests).
        ingest: ``(start, stop)`` ingested positions this block renders first.
        stream_start: stream position of its first sampled preset, ``b * STREAM_STRIDE``.
    """

    block: int
    blocks: int
    size: int
    quota: int
    ingest: tuple[int, int]
    stream_start: int

    @property
    def file(self) -> str:
        return shard_name(self.block)


def plan_blocks(n_presets: int, n_ingested: int, shard_size: int) -> list[Block]:
    """The blocks of a run (see the module docstring)."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"--shard-size must be an integer >= 1, got {shard_size!r}")
    blocks = max(1, math.ceil(n_presets / shard_size), math.ceil(n_ingested / shard_size))
    per = math.ceil(n_ingested / blocks)
    out = []
    for b in range(blocks):
        quota = max(0, min(shard_size, n_presets - b * shard_size))
        lo, hi = min(n_ingested, b * per), min(n_ingested, (b + 1) * per)
        out.append(Block(b, blocks, shard_size, quota, (lo, hi), b * STREAM_STRIDE))
    return out


def blocks_of_shard(plan: list[Block], shard: tuple[int, int] | None) -> list[Block]:
    """The blocks ``--shard K/N`` writes (every block when ``shard`` is None)."""
    if shard is None:
        return list(plan)
    k, n = shard
    return [b for b in plan if b.block % n == k]


# ------------------------------------------------------------------------------------- index
@dataclass
class ShardInfo:
    """One shard file as found on disk (an entry of ``index.json``).

    Attributes:
        file: name inside the directory.
        block, blocks: its ``shard_block`` and ``shard_blocks`` attributes.
        rows: committed rows; presets: kept presets (its progress record).
        complete: whether its block finished (``complete`` in its progress record).
        bytes, mtime_ns: of the file, to tell whether the index is still current.
        identity: the attributes every shard of a run shares (compared by :func:`check_shards`).
        keys: ``(synthetic, preset_index)`` pairs it holds, for the overlap check (not stored).
    """

    file: str
    block: int
    blocks: int
    rows: int
    presets: int
    complete: bool
    bytes: int
    mtime_ns: int
    identity: dict[str, Any]
    keys: np.ndarray | None = None

    def entry(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("keys")
        d.pop("identity")
        return d


def _identity(attrs: dict[str, Any]) -> dict[str, Any]:
    """What must be equal across the shards of one run, named as :func:`check_shards` reports it."""
    run = attrs.get("run_settings_json")
    run = json.loads(run) if isinstance(run, str) else {}
    registry = attrs.get("registry_json", "")
    return {
        "seed": run.get("seed", attrs.get("seed")),
        "tier": run.get("tier", attrs.get("tier")),
        "schema": attrs.get("schema_version"),
        "registry": hashlib.sha256(str(registry).encode()).hexdigest()[:16],
        "wavetables": hashlib.sha256(json.dumps(attrs.get("wavetable_hashes", [])).encode()).hexdigest()[:16],
        "render": run.get("render"),
        "ingest": attrs.get("ingest_hash"),
        "settings": {k: v for k, v in run.items() if k not in ("seed", "tier", "render")},
    }


def read_shard(path: Path) -> ShardInfo:
    """Open one shard file (at its last commit) and describe it; ``ShardError`` if it is not one."""
    from vitalmatch.data.reader import DatasetReader

    st = path.stat()
    try:
        with DatasetReader(path) as r:
            attrs = r.attrs
            progress = r.progress()
            n = len(r)
            index = r.metadata("preset_index").astype(np.int64)
            synthetic = r.metadata("source") == "synthetic"
    except ValueError as e:
        raise ShardError(f"{path}: {e}") from None
    if "shard_block" not in attrs:
        raise ShardError(f"{path} is a dataset but not a shard (no shard_block attribute)")
    block = int(attrs["shard_block"])
    start = int(attrs.get("stream_start", block * STREAM_STRIDE))
    sampled = index[synthetic]
    if sampled.size and (sampled.min() < start or sampled.max() >= start + STREAM_STRIDE):
        raise ShardError(f"{path}: sampled preset_index outside block {block}'s stream range")
    keys = np.unique(np.stack([synthetic.astype(np.int64), index], axis=1), axis=0) if n else None
    return ShardInfo(
        path.name,
        block,
        int(attrs["shard_blocks"]),
        n,
        int(progress.get("kept_presets", 0)),
        bool(progress.get("complete", False)),
        st.st_size,
        st.st_mtime_ns,
        _identity(attrs),
        keys,
    )


def shard_files(directory: Path) -> list[Path]:
    """The ``shard-*.h5`` files of ``directory``, sorted by name."""
    return sorted(p for p in Path(directory).glob(SHARD_GLOB) if p.is_file())


def scan(directory: Path) -> list[ShardInfo]:
    """Read every shard of ``directory`` (``ShardError`` for none, or for a file that is not one)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ShardError(f"{directory}: no such directory")
    files = shard_files(directory)
    if not files:
        raise ShardError(f"{directory} holds no {SHARD_GLOB} files")
    return [read_shard(p) for p in files]


def check_shards(directory: Path, infos: list[ShardInfo], *, complete: bool = True) -> list[ShardInfo]:
    """The shards in block order, or ``ShardError`` (one line naming the files) for a missing
    block, an overlap, an unfinished shard (when ``complete``) or shards of different runs."""
    if not infos:
        raise ShardError(f"{directory} holds no {SHARD_GLOB} files")
    first = min(infos, key=lambda s: s.block)
    for s in infos:
        if s.blocks != first.blocks:
            raise ShardError(
                f"{directory}: {s.file} belongs to a run of {s.blocks} blocks, {first.file} to one of "
                f"{first.blocks} (other -n or --shard-size)"
            )
        for key, value in first.identity.items():
            if s.identity[key] != value:
                what = {"schema": "schema version", "settings": "content settings"}.get(key, key)
                shown = (
                    f" ({first.identity[key]} vs {s.identity[key]})"
                    if key in ("seed", "tier", "schema")
                    else ""
                )
                raise ShardError(f"{directory}: {first.file} and {s.file} have different {what}{shown}")
    by_block: dict[int, ShardInfo] = {}
    for s in infos:
        if s.block in by_block:
            raise ShardError(f"{directory}: {by_block[s.block].file} and {s.file} both hold block {s.block}")
        if not 0 <= s.block < s.blocks:
            raise ShardError(f"{directory}: {s.file} claims block {s.block} of a run of {s.blocks}")
        by_block[s.block] = s
    missing = sorted(set(range(first.blocks)) - set(by_block))
    if missing:
        names = ", ".join(shard_name(b) for b in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ShardError(f"{directory}: {len(missing)} of {first.blocks} shards missing ({names})")
    if complete:
        for s in infos:
            if not s.complete:
                raise ShardError(
                    f"{directory}: {s.file} is unfinished ({s.presets} presets kept); "
                    "finish it with the same generate command and --resume"
                )
    ordered = [by_block[b] for b in range(first.blocks)]
    keyed = [s for s in ordered if s.keys is not None]
    if len(keyed) > 1:
        every = np.concatenate([s.keys for s in keyed if s.keys is not None])
        owner = np.repeat(np.arange(len(keyed)), [len(s.keys) for s in keyed if s.keys is not None])
        _, first_at, counts = np.unique(every, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = every[first_at[np.flatnonzero(counts > 1)[0]]]
            holders = sorted({keyed[int(o)].file for o in owner[(every == dup).all(axis=1)]})
            kind = "sampled" if dup[0] else "ingested"
            raise ShardError(
                f"{directory}: {kind} preset {int(dup[1])} is in {' and '.join(holders)} (overlapping shards)"
            )
    return ordered


def write_index(directory: Path, shards: list[ShardInfo], run_settings: dict | None = None) -> Path:
    """Write ``DIR/index.json`` atomically (a temporary file renamed over it) and return its path."""
    directory = Path(directory)
    first = shards[0]
    row_start = np.concatenate([[0], np.cumsum([s.rows for s in shards])]).tolist()
    data = {
        "format": INDEX_FORMAT,
        "schema_version": first.identity["schema"],
        "identity": first.identity,
        "run_settings": run_settings,
        "blocks": first.blocks,
        "rows": int(row_start[-1]),
        "presets": sum(s.presets for s in shards),
        "bytes": sum(s.bytes for s in shards),
        "shards": [{**s.entry(), "row_start": int(r)} for s, r in zip(shards, row_start, strict=False)],
    }
    path = directory / INDEX_NAME
    tmp = directory / f".{INDEX_NAME}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OSError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def load_index(directory: Path) -> list[ShardInfo] | None:
    """The shards ``index.json`` lists, if it is current: the same ``shard-*.h5`` names, each
    with the size and mtime recorded. None when it is missing, unreadable or stale."""
    directory = Path(directory)
    try:
        data = json.loads((directory / INDEX_NAME).read_text())
        if data.get("format") != INDEX_FORMAT:
            return None
        entries = data["shards"]
        if sorted(e["file"] for e in entries) != [p.name for p in shard_files(directory)]:
            return None
        out = []
        for e in entries:
            st = (directory / e["file"]).stat()
            if st.st_size != e["bytes"] or st.st_mtime_ns != e["mtime_ns"] or not e["complete"]:
                return None
            out.append(
                ShardInfo(
                    e["file"],
                    int(e["block"]),
                    int(e["blocks"]),
                    int(e["rows"]),
                    int(e["presets"]),
                    bool(e["complete"]),
                    int(e["bytes"]),
                    int(e["mtime_ns"]),
                    data["identity"],
                )
            )
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return None


def verified_shards(directory: Path) -> list[ShardInfo]:
    """The complete, consistent shards of ``directory`` in block order: from a current
    ``index.json``, else from a scan of the files (the same checks as ``vitalmatch index``)."""
    listed = load_index(directory)
    if listed is not None and [s.block for s in listed] == list(range(listed[0].blocks)):
        return listed
    return check_shards(Path(directory), scan(Path(directory)))


@dataclass
class IndexSummary:
    """What ``vitalmatch index`` found: shards, rows, presets and bytes of a checked directory."""

    path: Path
    shards: int
    rows: int
    presets: int
    bytes: int

    def line(self) -> str:
        return (
            f"wrote {self.path}: {self.shards} shards, {self.rows} rows, {self.presets} presets, "
            f"{self.bytes / 1e6:.1f} MB"
        )


def index_directory(directory: Path, run_settings: dict | None = None) -> IndexSummary:
    """Scan, check and (re)write ``DIR/index.json``; ``ShardError`` (one line) when the directory
    is incomplete or inconsistent (then no index is written)."""
    directory = Path(directory)
    shards = check_shards(directory, scan(directory))
    if run_settings is None:
        from vitalmatch.data.reader import DatasetReader

        with DatasetReader(directory / shards[0].file) as r:
            text = r.attrs.get("run_settings_json")
        run_settings = json.loads(text) if isinstance(text, str) else None
    path = write_index(directory, shards, run_settings)
    return IndexSummary(
        path,
        len(shards),
        sum(s.rows for s in shards),
        sum(s.presets for s in shards),
        sum(s.bytes for s in shards),
    )
