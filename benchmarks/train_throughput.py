"""Benchmark: training throughput, model steps against data loading, measured in one run.

Usage::

    python benchmarks/train_throughput.py [--archs slim10,slim18,resnet18] [--batch 32] [--steps 10]
        [--warmup 3] [--threads 0] [--data FILE.h5|DIR/] [--streaming WORKERS] [--quick]
        [--encoders ast,mert] [--encoder-sizes small[,real]] [--encoder-batch 8] [--encoder-steps 3]
        [--out benchmarks/results]

What it measures (samples/s are medians over timed steps; warm-up steps are excluded; the ratios
come from numbers taken in this same run, since the machine may be noisy):

1. *model steps on the CPU*, per arch of :mod:`vitalmatch.learn.model`: forward + loss +
   backward + gradient clipping + AdamW step, as in the training loop, at ``--batch`` examples of
   ``(1, 128, 173)`` log-mels (2 s at 44.1 kHz, hop 512), channels-last, torch's default thread
   count (or ``--threads``); and forward only (inference mode). The heads are Tier-1 sized (58
   continuous, 22 categorical) or, with ``--data``, the dataset's learnable registry. The
   reference arch (slim10) is also measured with one thread: when other processes keep the
   cores busy, OpenMP's spinning threads can make the default thread count many times slower
   than one thread (``OMP_WAIT_POLICY=PASSIVE`` avoids that; it is recorded in the JSON).
   *Pretrained encoders* (issue 20, ``--arch ast|mert``): the same step on ``--encoder-batch``
   waveforms of 2 s at the encoder's rate (AST: 16 kHz through its in-graph fbank; MERT: 24 kHz),
   for a ``small`` config (4 layers of 256; AST over the clip's 198 frames) and the ``real`` sizes
   (AST-base with its 1024-frame input, MERT-v1-95M); ``--encoders none`` skips them.
2. the same on the GPU with bf16 autocast when torch sees CUDA (else it says so and skips).
3. *data loading*, in samples/s: (a) the in-memory path of training (``SplitData.batch`` of
   random rows + ``inputs.augment``: gain/noise, normalisation, SpecAugment) on the CPU (and with
   the augmentation on the GPU when there is one); (b) log-mels computed on the fly from
   ``--batch`` clips of 2 s audio with ``features.log_mel`` (random audio, or the dataset's);
   (c) with ``--data``: ``VitalDataset`` audio rows through a ``DataLoader`` with 0 and 2
   workers, shuffled as a DataLoader-based loop would read them (and in file order with 0
   workers, for comparison; ``train.fit`` itself does not use it); rates include each epoch's
   worker start-up, reported apart too. With ``--data``
   also ``load_split`` seconds per 1000 rows (reading stored log-mels, or computing them); with
   ``--streaming W`` also (d) one streamed epoch of ``--load-rows`` rows (``train --stream on``,
   W loader workers), whose ratio to the slim10 step rate has the goal >= 3 (issue 19).
   Each loading rate is divided by the CPU model-step rate of slim10 (the CPU default arch):
   a ratio below 1 means loading is the bottleneck. Loading and the model step share the CPU
   cores when they run in one process, so the table also gives the share of a serial step that
   loading would take: ``model rate / (loading rate + model rate)``.

Goals (issue: training stage): the in-memory path >= 10 x the slim10 CPU step rate (loading
under 10% of a step, so training is compute-bound); slim10 trains about 6x faster than resnet18
on the CPU (model.py's claim; reported as a ratio). On a quiet 2-core CPU expect about 120
samples/s for slim10 and 19 for resnet18. Everything is written as JSON too
(``train_throughput.json`` in ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from vitalmatch.features import FeatureConfig, log_mel
from vitalmatch.learn.augment import band_stats
from vitalmatch.learn.config import TrainConfig
from vitalmatch.learn.data import SplitData
from vitalmatch.learn.inputs import as_input, augment
from vitalmatch.learn.losses import LossConfig, parameter_loss
from vitalmatch.learn.model import ARCHS, ENCODER_ARCHS, ModelConfig, ParamNet

#: Encoder configs of the benchmark: ``small`` (4 layers of 256) and the real sizes (the defaults).
ENCODER_SIZES = {
    "small": {
        "ast": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                    max_length=198),
        "mert": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                     conv_dim=[256] * 7, num_conv_pos_embedding_groups=16),
    },
    "real": {"ast": {}, "mert": {}},
}  # fmt: skip

# Tier-1-like heads (the learnable registry of a Tier-1 dataset).
TIER1_CONTINUOUS = 58
TIER1_CATEGORICAL = [2, 8, 2, 10, 14, 13, 2, 2, 2, 12, 2, 11, 28, 14, 13, 2, 2, 2, 12, 2, 11, 28]
CLIP_SECONDS = 2.0
CPU_DEFAULT_ARCH = "slim10"
GPU_DEFAULT_ARCH = "resnet18"


# ------------------------------------------------------------------------------------ timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, warmup: int, steps: int, device: torch.device) -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _rate(samples: int, times: list[float]) -> dict:
    """Samples/s from the median step time, with the fastest and slowest step's rate."""
    med = statistics.median(times)
    return {
        "samples_per_s": samples / med,
        "median_step_s": med,
        "min_samples_per_s": samples / max(times),
        "max_samples_per_s": samples / min(times),
        "steps": len(times),
    }


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------------ model
def _targets(batch: int, n_cont: int, sizes: list[int], device: torch.device, g: torch.Generator) -> dict:
    cat = torch.stack([torch.randint(0, k, (batch,), generator=g) for k in sizes], dim=1)
    return {
        "continuous": torch.rand(batch, n_cont, generator=g).to(device),
        "categorical": cat.to(device),
        "cont_mask": (torch.rand(batch, n_cont, generator=g) < 0.8).to(device),
        "cat_mask": (torch.rand(batch, len(sizes), generator=g) < 0.8).to(device),
    }


def _step_rates(
    model, x: torch.Tensor, tgt: dict, n_cont: int, batch: int, warmup: int, steps: int, device
) -> dict:
    """Training-step and inference samples/s of ``model`` on input ``x`` (the loop of
    ``train.fit``: AdamW with decay / no-decay groups, clipping at 1.0, the loss read back every
    step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": 0.01},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=1e-4,
    )
    weights = torch.ones(n_cont, device=device)
    loss_config = LossConfig()

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device):
            out = model(x)
        terms = parameter_loss(out, tgt, weights, loss_config)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        float(terms["loss"].detach())  # the loop reads the loss back every step

    def infer_step() -> None:
        with torch.inference_mode(), _autocast(device):
            model(x)

    model.train()
    train = _rate(batch, _timed(train_step, warmup, steps, device))
    model.eval()
    infer = _rate(batch, _timed(infer_step, warmup, steps, device))
    return {
        "train": train,
        "inference": infer,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def bench_model(
    arch: str,
    n_cont: int,
    sizes: list[int],
    batch: int,
    shape: tuple[int, int],
    warmup: int,
    steps: int,
    device: torch.device,
) -> dict:
    """Training-step and inference samples/s of one arch on ``device`` (:func:`_step_rates`)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = ParamNet(ModelConfig(arch=arch, n_continuous=n_cont, categorical_sizes=list(sizes)))
    model = model.to(device).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, *shape, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    tgt = _targets(batch, n_cont, sizes, device, g)
    return _step_rates(model, x, tgt, n_cont, batch, warmup, steps, device)


def bench_encoder(
    arch: str,
    size: str,
    n_cont: int,
    sizes: list[int],
    batch: int,
    warmup: int,
    steps: int,
    device: torch.device,
) -> dict:
    """Training-step and inference samples/s of a pretrained-encoder arch (random weights of the
    ``size`` config of :data:`ENCODER_SIZES`) on ``batch`` waveforms of :data:`CLIP_SECONDS` at the
    encoder's rate (:func:`_step_rates`, as for :func:`bench_model`)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    config = ModelConfig(arch=arch, n_continuous=n_cont, categorical_sizes=list(sizes),
                         encoder=ENCODER_SIZES[size][arch])  # fmt: skip
    model = ParamNet(config).to(device)
    x = (0.1 * torch.randn(batch, int(CLIP_SECONDS * ENCODER_ARCHS[arch]), generator=g)).to(device)
    tgt = _targets(batch, n_cont, sizes, device, g)
    rates = _step_rates(model, x, tgt, n_cont, batch, warmup, steps, device)
    return {**rates, "batch": batch, "input_samples": int(x.shape[1])}


# ------------------------------------------------------------------------------------ data
def synthetic_split(n: int, n_cont: int, sizes: list[int], shape: tuple[int, int]) -> SplitData:
    """A split of random log-mel-like values (around log(1e-3), floor log(1e-5)) and targets."""
    g = torch.Generator().manual_seed(1)
    mels = (torch.randn(n, *shape, generator=g) * 2.0 - 7.0).clamp_min(float(np.log(1e-5)))
    t = _targets(n, n_cont, sizes, torch.device("cpu"), g)
    return SplitData(
        mels.to(torch.float16),
        t["continuous"],
        t["categorical"],
        t["cont_mask"],
        t["cat_mask"],
        torch.full((n,), 60, dtype=torch.int64),
    )


def bench_in_memory(
    split: SplitData, features: FeatureConfig, batch: int, warmup: int, steps: int, device: torch.device
) -> dict:
    """Batches as ``train.fit`` makes them: random rows -> ``SplitData.batch`` -> device ->
    ``inputs.augment`` (default TrainConfig: gain, noise, normalisation, SpecAugment) -> ``as_input``."""
    config = TrainConfig()
    mean, std = band_stats(split.mels)
    bundle = SimpleNamespace(features=features, norm_mean=mean, norm_std=std)
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(2))
    state = {"i": 0}

    def step() -> None:
        i = state["i"]
        state["i"] += 1
        lo = (i * batch) % max(len(split) - batch + 1, 1)
        g = torch.Generator().manual_seed(i)
        b = {k: v.to(device, non_blocking=True) for k, v in split.batch(order[lo : lo + batch]).items()}
        as_input(augment(b, bundle, config, g), config)

    return _rate(batch, _timed(step, warmup, steps, device))


def bench_log_mel(
    audio: torch.Tensor, features: FeatureConfig, warmup: int, steps: int, device: torch.device
) -> dict:
    """``log_mel`` of a batch of clips ``(B, 1, T)`` already on ``device``."""
    audio = audio.to(device)
    return _rate(audio.shape[0], _timed(lambda: log_mel(audio, features), warmup, steps, device))


def bench_loader(path: Path, batch: int, n_batches: int, workers: int, shuffle: bool) -> dict:
    """``VitalDataset`` (audio) through a ``DataLoader``: samples/s over ``n_batches`` batches
    counted from creating the iterator (worker start-up included), and the first batch's delay."""
    from vitalmatch.data.torch_dataset import VitalDataset

    ds = VitalDataset(path, "train", audio=True)
    n_batches = min(n_batches, len(ds) // batch)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        shuffle=shuffle,
        num_workers=workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(3),
    )
    t0 = time.perf_counter()
    first = None
    n = 0
    for i, b in enumerate(loader):
        n += b["audio"].shape[0]
        if first is None:
            first = time.perf_counter() - t0
        if i + 1 >= n_batches:
            break
    total = time.perf_counter() - t0
    ds.close()
    return {
        "samples_per_s": n / total,
        "samples": n,
        "seconds": total,
        "first_batch_s": first,
        "workers": workers,
        "shuffle": shuffle,
    }


def bench_streaming(
    path: Path, registry, features: FeatureConfig, batch: int, rows: int, workers: int
) -> dict:
    """One streamed epoch (``train --stream on``: :class:`~vitalmatch.learn.data.StreamingSplit`,
    chunk-aligned blocks, shuffled windows, ``workers`` DataLoader workers) of the first ``rows``
    training rows: samples/s counted from creating the iterator (worker start-up included)."""
    from vitalmatch.learn.data import StreamingSplit

    split = StreamingSplit(path, "train", registry, features, max_rows=rows, workers=workers)
    t0 = time.perf_counter()
    first, n = None, 0
    for b in split.epoch_batches(0, 0, batch_size=batch):
        n += len(b["row"])
        first = time.perf_counter() - t0 if first is None else first
    total = time.perf_counter() - t0
    return {
        "samples_per_s": n / total,
        "samples": n,
        "seconds": total,
        "first_batch_s": first,
        "workers": workers,
        "mels": "read (stored)" if split.use_stored else "computed from audio",
    }


def bench_load_split(path: Path, registry, features: FeatureConfig, rows: int) -> tuple[dict, SplitData]:
    from vitalmatch.data.reader import DatasetReader
    from vitalmatch.learn.data import load_split, stored_mels_match

    with DatasetReader(path) as reader:
        stored = stored_mels_match(reader, features)
    t0 = time.perf_counter()
    split = load_split(path, "train", registry, features, max_rows=rows)
    seconds = time.perf_counter() - t0
    n = len(split)
    return {
        "rows": n,
        "seconds": seconds,
        "seconds_per_1000_rows": 1000 * seconds / max(n, 1),
        "mels": "read (stored)" if stored else "computed from audio",
    }, split


# ------------------------------------------------------------------------------------ main
def _heads(data: Path | None) -> tuple[int, list[int], dict]:
    if data is None:
        return TIER1_CONTINUOUS, TIER1_CATEGORICAL, {"sample_rate": 44100, "audio_length": None}
    from vitalmatch.data.reader import DatasetReader
    from vitalmatch.learn.data import learnable_registry

    with DatasetReader(data) as reader:
        reg = learnable_registry(reader)
        info = {"sample_rate": reader.sample_rate, "audio_length": reader.audio_length, "registry": reg}
    return len(reg.continuous), [s.n_options for s in reg.categorical], info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--archs", default="slim10,slim18,resnet18", help="comma-separated, of: " + ", ".join(ARCHS)
    )
    ap.add_argument("--batch", type=int, default=32, help="examples per step")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before each measurement")
    ap.add_argument("--data", type=Path, default=None, help="a dataset .h5: real heads, audio and loading")
    ap.add_argument("--load-rows", type=int, default=1000, help="rows load_split reads (with --data)")
    ap.add_argument("--loader-batches", type=int, default=12, help="DataLoader batches per measurement")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument(
        "--streaming",
        type=int,
        default=None,
        metavar="WORKERS",
        help="with --data: also a streamed epoch of --load-rows rows with WORKERS loader workers",
    )
    ap.add_argument("--quick", action="store_true", help="few steps, slim10 only: check that it runs")
    ap.add_argument("--encoders", default="ast,mert", help="pretrained-encoder archs to time, or none")
    ap.add_argument(
        "--encoder-sizes",
        default="small",
        help="comma-separated, of: small, real (real: minutes per step on a CPU)",
    )
    ap.add_argument("--encoder-batch", type=int, default=8, help="waveforms per encoder step")
    ap.add_argument("--encoder-steps", type=int, default=3, help="timed steps per encoder measurement")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    if args.quick:
        archs = [CPU_DEFAULT_ARCH]
        args.steps, args.warmup = 3, 1
        args.load_rows, args.loader_batches = min(args.load_rows, 128), min(args.loader_batches, 3)
    enc_archs = [a.strip() for a in args.encoders.split(",") if a.strip() and a.strip() != "none"]
    enc_sizes = [z.strip() for z in args.encoder_sizes.split(",") if z.strip()]
    if args.quick:
        enc_sizes = ["small"]
    if [a for a in enc_archs if a not in ENCODER_ARCHS] or [z for z in enc_sizes if z not in ENCODER_SIZES]:
        ap.error(f"--encoders: of {', '.join(ENCODER_ARCHS)}; --encoder-sizes: of {', '.join(ENCODER_SIZES)}")
    unknown = [a for a in archs if a not in ARCHS]
    if unknown or not archs:
        ap.error(f"--archs: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(ARCHS)}")
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("--batch and --steps must be >= 1, --warmup >= 0")
    if args.data is not None and not args.data.exists():
        ap.error(f"--data {args.data}: no such file or directory")

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    n_cont, sizes, info = _heads(args.data)
    features = FeatureConfig(sample_rate=info["sample_rate"])
    samples = info["audio_length"] or int(CLIP_SECONDS * features.sample_rate)
    shape = (features.n_mels, features.n_frames(samples))
    cpu = torch.device("cpu")
    cuda = torch.device("cuda") if torch.cuda.is_available() else None
    load_start = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, threads: {threads}, CPUs: {os.cpu_count()} "
        f"(load average {load_start:.2f}); batch {args.batch}, input 1x{shape[0]}x{shape[1]} channels-last; "
        f"heads: {n_cont} continuous + {len(sizes)} categorical"
        f" ({'from ' + str(args.data) if args.data else 'Tier-1-like'})"
        f"{'; QUICK run (few steps, not for comparison)' if args.quick else ''}"
    )
    if load_start > 0.5 * (os.cpu_count() or 1):
        print("note: the CPU is busy (load average above half the cores): absolute rates are low and noisy")

    # 1. model steps on the CPU, 2. on the GPU
    models: dict[str, dict] = {"cpu": {}}
    for arch in archs:
        models["cpu"][arch] = bench_model(
            arch, n_cont, sizes, args.batch, shape, args.warmup, args.steps, cpu
        )
    ref_arch = CPU_DEFAULT_ARCH if CPU_DEFAULT_ARCH in archs else archs[0]
    if threads > 1:  # the same with one thread: shows OpenMP's cost when other processes use the cores
        torch.set_num_threads(1)
        try:
            models["cpu_1_thread"] = {
                ref_arch: bench_model(
                    ref_arch, n_cont, sizes, args.batch, shape, args.warmup, args.steps, cpu
                )
            }
        finally:
            torch.set_num_threads(threads)
    for arch in enc_archs:
        for size in enc_sizes:
            models["cpu"][f"{arch}-{size}"] = bench_encoder(
                arch, size, n_cont, sizes, args.encoder_batch, 1, args.encoder_steps, cpu
            )
    gpu_name = None
    if cuda is not None:
        gpu_name = torch.cuda.get_device_name(cuda)
        models["cuda_bf16"] = {}
        for arch in archs:
            models["cuda_bf16"][arch] = bench_model(
                arch, n_cont, sizes, args.batch, shape, max(args.warmup, 3), max(args.steps, 10), cuda
            )
        for arch in enc_archs:
            for size in enc_sizes:
                models["cuda_bf16"][f"{arch}-{size}"] = bench_encoder(
                    arch, size, n_cont, sizes, max(args.encoder_batch, 32), 3, 10, cuda
                )

    # 3. data loading
    loading: dict[str, dict] = {}
    load_split_result = None
    if args.data is not None:
        load_split_result, split = bench_load_split(args.data, info["registry"], features, args.load_rows)
        from vitalmatch.data.reader import DatasetReader

        with DatasetReader(args.data) as reader:
            rows = reader.split_indices("train")[: args.batch]
            audio = torch.from_numpy(reader.audio(rows))
    else:
        split = synthetic_split(max(4 * args.batch, 256), n_cont, sizes, shape)
        g = torch.Generator().manual_seed(4)
        audio = 0.1 * torch.randn(args.batch, 1, samples, generator=g)
    if len(split) < args.batch:
        raise SystemExit(f"the split has {len(split)} rows, fewer than one batch of {args.batch}")
    loading["in-memory + augment (CPU)"] = bench_in_memory(
        split, features, args.batch, args.warmup, args.steps, cpu
    )
    loading["log-mel on the fly (CPU)"] = bench_log_mel(audio, features, args.warmup, args.steps, cpu)
    if cuda is not None:
        loading["in-memory + augment (GPU)"] = bench_in_memory(
            split, features, args.batch, max(args.warmup, 3), max(args.steps, 10), cuda
        )
        loading["log-mel on the fly (GPU)"] = bench_log_mel(
            audio, features, max(args.warmup, 3), max(args.steps, 10), cuda
        )
    if args.data is not None:
        for workers, shuffle in ((0, False), (0, True), (2, True)):
            key = f"DataLoader audio, {workers} workers, {'shuffled' if shuffle else 'file order'}"
            loading[key] = bench_loader(args.data, args.batch, args.loader_batches, workers, shuffle)
        if args.streaming is not None:
            key = f"streamed epoch, {args.streaming} workers"
            loading[key] = bench_streaming(
                args.data, info["registry"], features, args.batch, args.load_rows, args.streaming
            )
    load_end = os.getloadavg()[0]

    # ratios
    cpu_step = models["cpu"][ref_arch]["train"]["samples_per_s"]
    gpu_arch = GPU_DEFAULT_ARCH if GPU_DEFAULT_ARCH in archs else archs[0]
    gpu_step = models["cuda_bf16"][gpu_arch]["train"]["samples_per_s"] if cuda is not None else None
    ratios = {}
    for key, r in loading.items():
        rate = r["samples_per_s"]
        entry = {
            f"over_cpu_{ref_arch}_train": rate / cpu_step,
            "bottleneck_on_cpu": rate < cpu_step,
            "share_of_serial_cpu_step": cpu_step / (rate + cpu_step),
        }
        if gpu_step is not None:
            entry[f"over_gpu_{gpu_arch}_train"] = rate / gpu_step
            entry["bottleneck_on_gpu"] = rate < gpu_step
        ratios[key] = entry
    speedup = None
    if "slim10" in archs and "resnet18" in archs:
        speedup = (
            models["cpu"]["slim10"]["train"]["samples_per_s"]
            / models["cpu"]["resnet18"]["train"]["samples_per_s"]
        )

    # table
    print()
    print(
        f"{'model step (median, slowest-fastest step)':44} {'train samples/s':>22} "
        f"{'inference samples/s':>22} {'params':>8}"
    )

    def cell(r: dict) -> str:
        spread = f"({r['min_samples_per_s']:.0f}-{r['max_samples_per_s']:.0f})"
        return f"{r['samples_per_s']:9.1f} {spread:>12}"

    for dev, table in models.items():
        for arch, r in table.items():
            name = f"{arch} on {dev.replace('_', ' ')}"
            print(f"  {name:42} {cell(r['train'])} {cell(r['inference'])} {r['parameters'] / 1e6:7.2f}M")
    if cuda is None:
        print("  GPU: none available (torch.cuda.is_available() is False); skipped")
    else:
        print(f"  GPU: {gpu_name}, bf16 autocast")
    if "cpu_1_thread" in models:
        one = models["cpu_1_thread"][ref_arch]["train"]["samples_per_s"]
        many = models["cpu"][ref_arch]["train"]["samples_per_s"]
        if one > many:
            print(
                f"  note: 1 thread trains {one / many:.1f}x faster than {threads}: "
                "the cores are contended and "
                "OpenMP threads wait for each other (try OMP_WAIT_POLICY=PASSIVE or --threads 1)"
            )
    if speedup is not None:
        print(f"  slim10 / resnet18 training on the CPU: {speedup:.1f}x  (model.py says about 6x)")
    print()
    gpu_head = f" {'GPU ratio':>9} {'':10}" if gpu_step is not None else ""
    print(f"{'data loading':44} {'samples/s':>9} {'ratio':>7} {'':10} {'serial':>7}{gpu_head}")
    for key, r in loading.items():
        q = ratios[key]
        line = (
            f"  {key:42} {r['samples_per_s']:9.1f} {q[f'over_cpu_{ref_arch}_train']:7.2f} "
            f"{'BOTTLENECK' if q['bottleneck_on_cpu'] else 'ok':10} {q['share_of_serial_cpu_step']:7.0%}"
        )
        if gpu_step is not None:
            verdict = "BOTTLENECK" if q["bottleneck_on_gpu"] else "ok"
            line += f" {q[f'over_gpu_{gpu_arch}_train']:9.2f} {verdict:10}"
        print(line)
    print(
        f"  ratio: loading samples/s / training samples/s of {ref_arch} on the CPU (threads: {threads}); "
        "below 1, loading is the bottleneck"
    )
    print("  serial: share of a training step spent loading when both run in one process")
    if gpu_step is not None:
        print(f"  GPU ratio: loading samples/s / training samples/s of {gpu_arch} on the GPU")
    if args.data is not None:
        for key, r in loading.items():
            if key.startswith("DataLoader"):
                print(
                    f"    {key}: first batch after {r['first_batch_s']:.2f} s; "
                    f"{r['samples']} samples in {r['seconds']:.2f} s"
                )
        ls = load_split_result
        print(
            f"  load_split: {ls['seconds_per_1000_rows']:.1f} s per 1000 rows "
            f"({ls['mels']}; {ls['rows']} rows "
            f"in {ls['seconds']:.1f} s)"
        )
    mem = ratios["in-memory + augment (CPU)"][f"over_cpu_{ref_arch}_train"]
    print(
        f"in-memory loading / CPU {ref_arch} step: {mem:.1f}  (goal >= 10); loading is "
        f"{'the bottleneck' if mem < 1 else 'not the bottleneck'}"
    )
    print(f"load average: {load_start:.2f} at start, {load_end:.2f} at end ({os.cpu_count()} CPUs)")

    result = {
        "quick": args.quick,
        "torch": torch.__version__,
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average": {"start": load_start, "end": load_end},
        "gpu": gpu_name,
        "batch": args.batch,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "input_shape": [1, *shape],
        "channels_last": True,
        "heads": {"continuous": n_cont, "categorical_sizes": sizes, "from": str(args.data or "tier1-like")},
        "models": models,
        "ratio_slim10_over_resnet18_cpu_train": speedup,
        "loading": loading,
        "loading_ratios": ratios,
        "reference_arch": {"cpu": ref_arch, "gpu": gpu_arch if gpu_step is not None else None},
        "load_split": load_split_result,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_throughput.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
