"""int8 encoder backends: the same sentence-transformers model, quantised locally, on a CPU inference runtime.

* "openvino-int8": OpenVINO, static int8 (NNCF post-training quantisation, calibrated on local text); cosine
  to fp32 0.995. Fastest where the CPU has int8 dot products (VNNI/AMX); on an AVX2-only AMD EPYC it measured
  no faster than torch fp32 (13-16 passages per CPU-second vs 13-16).
* "onnx-int8": ONNX Runtime, dynamic int8 weights (no calibration); cosine 0.993. On that AVX2 host: 19-24
  passages per CPU-second, ~1.5x torch.

The int8 model is built from the fp32 weights on first use (export + quantise, a minute or two) and cached
under the user cache dir, keyed by model path, backend and INT8_BUILD_VERSION; later loads read the cache and
import neither torch nor transformers (cold start of the bot is budgeted at 5 s). Only models made of a
Transformer, a Pooling and optionally a Normalize module are supported: the pooling is redone here in numpy
from the model's own Pooling config, so the vectors match the torch backend's (cosine ~0.995)."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.encoders.base import (
    INT8_BACKENDS,
    INT8_BUILD_VERSION,
    SMALL_BATCH,
    TokenEmbeddings,
    canonical_model_name,
    length_batches,
    normalize_rows,
    offline_env,
    pad_batch,
    resolve_model_path,
    vectors_of,
)
from embeddings.errors import QabotError

INSTALL_HINT = "pip install 'torch==2.13.0' 'qabot[int8]'"
# onnxruntime and onnx are main dependencies (onnx-int8 is the default backend): missing, the install is broken.
INSTALL_HINTS = {"openvino-int8": INSTALL_HINT,
                 "onnx-int8": "reinstall qabot (pip install 'torch==2.13.0' -e .), or set QABOT_ENCODER_BACKEND=torch"}
POOLING_MODES = ("mean", "cls", "max", "mean_sqrt_len_tokens", "lasttoken")
_RUNTIME_MODULE = {"openvino-int8": "openvino", "onnx-int8": "onnxruntime"}
# Calibration: SQuAD's tune split only (PROVENANCE.md: the first 24 articles); never the held-out ones.
SQUAD_TUNE_ARTICLES = 24
CALIBRATION_PASSAGES = 200
CALIBRATION_SHORT = 50  # question-length texts: queries are short, and their activations differ


def disable_runtime_telemetry() -> None:
    """Both runtimes report usage by default; qabot never sends anything. Must run before their import.

    ONNX Runtime (>= 1.29 on Linux) reads ORT_DISABLE_TELEMETRY when its environment is created. OpenVINO's
    Python tools (model conversion, NNCF) send through the openvino_telemetry package and fall back to a stub
    when it cannot be imported, so it is made unimportable in this process (no consent file is written)."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    elif sys.modules["openvino_telemetry"] is not None:  # imported before us: make every consent check say no
        try:
            from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

            OptInChecker.check = lambda self, *a, **k: ConsentCheckResult.DECLINED  # type: ignore[method-assign]
            sys.modules["openvino_telemetry"].Telemetry().consent = False  # type: ignore[attr-defined]
        except Exception:  # layout changed or not configured yet; the check patch above is what matters
            pass


def _import_runtime(backend: str) -> Any:
    disable_runtime_telemetry()
    module = _RUNTIME_MODULE[backend]
    try:
        return __import__(module)
    except ImportError as exc:
        raise QabotError(
            f"The {backend} encoder backend needs {module}, which is not installed: {INSTALL_HINTS[backend]}"
        ) from exc


@dataclass(frozen=True)
class Int8Meta:
    """meta.json of a cache entry: what the runtime needs to tokenize, run and pool without torch."""

    build_version: str
    backend: str
    model: str
    model_path: str
    dimension: int
    max_tokens: int
    pooling: str
    input_names: tuple[str, ...]
    pad_id: int
    calibration_texts: int
    check_cosine: float  # mean cosine to the fp32 model on calibration texts, at build time
    build_seconds: float
    # Each file of the entry with its size when built: a truncated or replaced file is a broken entry.
    # (Empty in entries built before it was recorded: then only their presence is checked.)
    files: dict[str, int] = field(default_factory=dict)
    # The built model's vector of PROBE_TEXT: each runner must give it again before its first real text, so
    # a model file changed in place (same size, other bytes) fails with one line instead of giving wrong
    # vectors. (Empty in entries built before it was recorded: not checked.)
    probe: list[float] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> Int8Meta:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["input_names"] = tuple(data["input_names"])
        return cls(**data)


# The files an entry cannot work without, per backend (besides meta.json).
REQUIRED_FILES = {"onnx-int8": ("tokenizer.json", "model.onnx"),
                  "openvino-int8": ("tokenizer.json", "model.xml", "model.bin")}


def entry_problem(entry: Path, backend: str) -> str | None:
    """Why the cache entry cannot be used (None: complete). Cheap: metadata and file sizes only."""
    try:
        meta = Int8Meta.read(entry / "meta.json")
    except FileNotFoundError:
        return "no meta.json"
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return f"unreadable meta.json ({type(exc).__name__}: {exc})"
    if meta.build_version != INT8_BUILD_VERSION or meta.backend != backend:
        return f"meta.json describes another build ({meta.backend}, version {meta.build_version})"
    if not isinstance(meta.files, dict):
        return "unreadable meta.json (files)"
    expected = dict.fromkeys(REQUIRED_FILES[backend], 0) | meta.files
    for name, size in expected.items():
        try:
            got = (entry / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if got == 0 or (size and got != size):
            return f"{name} is {got} bytes, not {size}" if size else f"{name} is empty"
    return None


def _cache_error(root: Path, exc: OSError) -> QabotError:
    why = exc.strerror or str(exc)
    return QabotError(f"Cannot build the int8 encoder in {root} ({why}): set QABOT_ENCODER_CACHE to a writable "
                      "directory with a few hundred MB free, or use QABOT_ENCODER_BACKEND=torch.")


def cache_root(override: Path | None = None) -> Path:
    """Where int8 copies are built: Settings.encoder_cache (QABOT_ENCODER_CACHE) or the user cache dir."""
    if override is not None:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("qabot", appauthor=False)) / "encoders"


def cache_key(name: str, model_path: str, backend: str) -> str:
    """Model path + backend + INT8_BUILD_VERSION, plus the weight files' sizes (changed weights mean a rebuild);
    the readable prefix is the model name's tail."""
    p = Path(model_path)
    files = sorted((f.name, f.stat().st_size) for f in p.iterdir() if f.is_file()) if p.is_dir() else []
    parts: list[object] = [str(p.resolve()) if p.exists() else model_path, backend, INT8_BUILD_VERSION, files]
    if backend == "openvino-int8":  # static ranges come from the calibration text: other text, other model
        parts.append(calibration_sources())
    blob = json.dumps(parts)
    slug = "".join(c if c.isalnum() else "-" for c in canonical_model_name(name).rsplit("/", 1)[-1])[-40:]
    return f"{slug}-{backend}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _say(message: str) -> None:
    print(f"qabot: {message}", file=sys.stderr, flush=True)


# What a build does, in order; BuildStages prints one line as each starts (and the time the last one took).
BUILD_STAGES = {
    "onnx-int8": ("load the fp32 model", "export to ONNX", "quantise to int8", "check against fp32"),
    "openvino-int8": ("load the fp32 model", "convert to OpenVINO", "quantise to int8 (calibrating)",
                      "check against fp32"),
}


class BuildStages:
    """Staged progress of an int8 build on stderr: `qabot:   [2/4] export to ONNX (load took 4 s)`."""

    def __init__(self, names: Sequence[str], say: Callable[[str], None] = _say) -> None:
        self.names = tuple(names)
        self._say = say
        self._at = 0
        self._started = time.perf_counter()

    def __call__(self, name: str) -> None:
        if name not in self.names:
            raise ValueError(f"unknown build stage {name!r}")
        now = time.perf_counter()
        took = f" (previous step {now - self._started:.0f} s)" if self._at else ""
        self._at = self.names.index(name) + 1
        self._started = now
        self._say(f"  [{self._at}/{len(self.names)}] {name}{took}")


def ensure_built(name: str, backend: str, cache_dir: Path | None = None,
                 say: Callable[[str], None] = _say) -> Path:
    """The cache entry for (model, backend), built first if missing. Atomic: built in a temp dir and renamed,
    under a file lock so two processes starting together build it once."""
    from filelock import FileLock

    path = resolve_model_path(name)
    root = cache_root(cache_dir)
    key = cache_key(name, path, backend)
    final = root / key
    if entry_problem(final, backend) is None:
        return final  # complete: no lock, so a read-only cache of built entries works
    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            return _build_locked(name, path, backend, root, key, say)
    except OSError as exc:  # read-only or full cache dir, a file where a directory should be, ...
        raise _cache_error(root, exc) from exc


def _build_locked(name: str, path: str, backend: str, root: Path, key: str, say: Callable[[str], None]) -> Path:
    final = root / key
    problem = entry_problem(final, backend)
    if problem is None:
        return final  # another process built it while we waited for the lock
    # Builds of this key that a killed process left behind (we hold the lock: no one else is building it).
    for stale in root.glob(f".build-{key}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists():
        print(f"qabot: the cached {backend} encoder in {final} is unusable ({problem}); rebuilding it",
              file=sys.stderr, flush=True)
        aside = root / f".broken-{key}-{os.getpid()}"
        os.replace(final, aside)
        shutil.rmtree(aside, ignore_errors=True)
    # Said once, before the slow part: what is built, why the wait, and where it is cached. The stages
    # below follow as lines (a first `make run` would otherwise sit silent for a minute).
    say(f"building the {backend} encoder for {canonical_model_name(name)}: once, 15-60 s; cached in {final}")
    stages = BuildStages(BUILD_STAGES[backend], say)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=root))
    try:
        with warnings.catch_warnings():  # tracer and deprecation chatter from torch/transformers
            warnings.simplefilter("ignore")
            meta = _build(name, path, backend, tmp, stages)
        files = {f.name: f.stat().st_size for f in sorted(tmp.iterdir()) if f.is_file()}
        meta = Int8Meta(**{**asdict(meta), "input_names": meta.input_names, "files": files})
        (tmp / "meta.json").write_text(json.dumps(asdict(meta), indent=2) + "\n", encoding="utf-8")
        if entry_problem(tmp, backend) is not None:  # a build that wrote less than it must
            raise QabotError(f"The {backend} build in {tmp} is incomplete ({entry_problem(tmp, backend)}); "
                             "use QABOT_ENCODER_BACKEND=torch.")
        os.replace(tmp, final)  # atomic: other processes see no entry or a complete one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"{backend} encoder ready in {meta.build_seconds:.0f} s (cosine to fp32 {meta.check_cosine:.4f}); "
        "later starts load it in about a second")
    return final


# --------------------------------------------------------------------------------------------- building


CHECKOUT = Path(__file__).resolve().parents[2]  # embeddings/encoders/int8.py -> ../../: seeds/ and ../shared


def _calibration_files() -> tuple[list[Path], Path]:
    root = CHECKOUT
    return sorted((root / "seeds").glob("*.txt")), root.parent / "shared" / "eval" / "squad_v1_dev" / "passages.jsonl.gz"


def calibration_sources() -> list[tuple[str, int]]:
    """Which files calibration_texts() reads and their sizes: cheap enough for every cache lookup."""
    seeds, squad = _calibration_files()
    return [(f.name, f.stat().st_size) for f in [*seeds, squad] if f.is_file()]


def calibration_texts() -> list[str]:
    """Local text for static quantisation: the seed articles, and passages (plus their first sentences, as
    stand-ins for short queries) of SQuAD's tune split when ../shared/eval is present. Deterministic."""
    seeds, squad = _calibration_files()
    passages: list[str] = []
    for f in seeds:
        words = f.read_text(encoding="utf-8", errors="replace").split()
        passages += [" ".join(words[i:i + 100]) for i in range(0, len(words), 100)]
    if squad.is_file():
        tune: list[str] = []
        order: list[str] = []
        with gzip.open(squad, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                if row["doc_id"] not in order:
                    order.append(row["doc_id"])
                if len(order) > SQUAD_TUNE_ARTICLES:
                    break  # articles come in file order: the rest are held out
                tune.append(row["text"])
        step = max(1, len(tune) // CALIBRATION_PASSAGES)
        passages += tune[::step][:CALIBRATION_PASSAGES]
    if not passages:  # a fresh build would otherwise fail deep in the tokenizer on an empty check batch
        raise QabotError(f"No calibration text for the int8 build: no seeds/*.txt under {CHECKOUT}; "
                         "use QABOT_ENCODER_BACKEND=torch.")
    short = [p.split(". ")[0][:200] for p in passages[1::2][:CALIBRATION_SHORT]]
    return passages + short


def _load_fp32(path: str) -> Any:
    try:
        import torch  # noqa: F401
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - packaging error
        raise QabotError(f"Building an int8 encoder needs torch and sentence-transformers: {INSTALL_HINT}") from exc
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover
        pass
    try:
        return SentenceTransformer(path, device="cpu")
    except Exception as exc:
        raise QabotError(f"Could not load the embedding model at {path!r} ({type(exc).__name__}: {exc})") from exc


def _pooling_of(model: Any, name: str) -> str:
    kinds = [type(m).__name__ for m in model]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise QabotError(f"The int8 backends run Transformer + Pooling (+ Normalize) models; {name!r} is "
                         f"{' + '.join(kinds)}. Use QABOT_ENCODER_BACKEND=torch.")
    pooling = model[1]
    mode = getattr(pooling, "pooling_mode", None)
    if mode is None:  # sentence-transformers < 5: one boolean per mode
        mode = pooling.get_pooling_mode_str()
    if not isinstance(mode, str) or mode not in POOLING_MODES or getattr(pooling, "include_prompt", True) is False:
        raise QabotError(f"The int8 backends do not support the pooling of {name!r} ({mode}). "
                         "Use QABOT_ENCODER_BACKEND=torch.")
    return mode


def _build(name: str, path: str, backend: str, out: Path,
           stage: Callable[[str], None] = lambda name: None) -> Int8Meta:
    t0 = time.perf_counter()
    offline_env()
    _import_runtime(backend)  # fail with the install hint before the slow part
    stages = BUILD_STAGES[backend]
    stage(stages[0])
    import inspect

    import torch

    model = _load_fp32(path)
    pooling = _pooling_of(model, name)
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise QabotError(f"The int8 backends need a fast (Rust) tokenizer; {name!r} has none. Use torch.")
    auto_model = model[0].auto_model.eval()
    accepted = inspect.signature(auto_model.forward).parameters
    input_names = tuple(n for n in tokenizer.model_input_names if n in accepted)
    max_tokens = int(model.max_seq_length)
    tokenizer.save_pretrained(str(out))
    if not (out / "tokenizer.json").is_file():
        raise QabotError(f"The tokenizer of {name!r} did not save a tokenizer.json; use QABOT_ENCODER_BACKEND=torch.")

    class TokenStates(torch.nn.Module):
        """The transformer alone, positional inputs, last hidden state out: what gets exported."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = auto_model

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(input_names, args, strict=True))).last_hidden_state

    wrapper = TokenStates().eval()
    texts = calibration_texts()

    def features(batch: Sequence[str]) -> dict[str, np.ndarray]:
        enc = tokenizer(list(batch), truncation=True, max_length=max_tokens, padding=True, return_tensors="np")
        return {k: np.asarray(enc[k], dtype=np.int64) for k in input_names}

    # Padded on purpose: an all-ones mask lets the tracer drop the mask as a constant.
    example = features(["An example sentence with a few more words in it than the other.", "Short one."])
    if backend == "openvino-int8":
        run = _build_openvino(wrapper, example, [features([t]) for t in texts], out, stage)
    else:
        run = _build_onnx(wrapper, example, input_names, out, stage)
    stage(stages[3])

    # Check the result against fp32 before caching it: a broken export must not become the index's vectors.
    # The runtime tokenizes with the bare Rust tokenizer: it must give the very ids transformers gives.
    from tokenizers import Tokenizer

    bare = Tokenizer.from_file(str(out / "tokenizer.json"))
    bare.no_padding()
    bare.enable_truncation(max_length=max_tokens)
    for text in texts:
        if bare.encode(text).ids != tokenizer(text, truncation=True, max_length=max_tokens)["input_ids"]:
            raise QabotError(f"The saved tokenizer of {name!r} does not reproduce transformers' tokenization; "
                             "use QABOT_ENCODER_BACKEND=torch.")
    pad_id = int(tokenizer.pad_token_id or 0)
    check = texts[:: max(1, len(texts) // 48)]

    def embedded(batch: Sequence[str]) -> np.ndarray:
        enc = features(batch)
        mask = enc["attention_mask"] if "attention_mask" in enc else np.ones_like(enc["input_ids"])
        return normalize_rows(pool(run(enc), mask, pooling))

    got = embedded(check)
    want = model.encode(check, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    cosine = float(np.mean(np.sum(got * want, axis=1)))
    probe = embedded([PROBE_TEXT])[0]
    if cosine < 0.98:
        raise QabotError(f"The {backend} build of {name!r} does not match the fp32 model (mean cosine {cosine:.3f}); "
                         "use QABOT_ENCODER_BACKEND=torch.")
    return Int8Meta(
        build_version=INT8_BUILD_VERSION, backend=backend, model=canonical_model_name(name), model_path=path,
        dimension=int(got.shape[1]), max_tokens=max_tokens, pooling=pooling, input_names=input_names,
        pad_id=pad_id, calibration_texts=len(texts) if backend == "openvino-int8" else 0,
        check_cosine=round(cosine, 5), build_seconds=round(time.perf_counter() - t0, 1),
        probe=[round(float(x), 6) for x in probe],
    )


def _build_openvino(wrapper: Any, example: dict[str, np.ndarray], calibration: list[dict[str, np.ndarray]],
                    out: Path, stage: Callable[[str], None]) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import nncf
    import openvino as ov
    import torch

    names = list(example)
    stage(BUILD_STAGES["openvino-int8"][1])
    with torch.no_grad():
        fp32 = ov.convert_model(wrapper, example_input=tuple(torch.from_numpy(example[k]) for k in names))
    for port, n in zip(fp32.inputs, names, strict=True):
        port.get_tensor().set_names({n})
    stage(BUILD_STAGES["openvino-int8"][2])
    # Static int8: activation ranges from the calibration texts (one per sample, as at query time).
    # TRANSFORMER type keeps softmax/layernorm in float and applies SmoothQuant: measured cosine 0.995 vs 0.99.
    quantized = nncf.quantize(
        fp32, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(calibration)
    )
    ov.save_model(quantized, str(out / "model.xml"), compress_to_fp16=False)
    compiled = ov.Core().compile_model(quantized, "CPU")
    return lambda feats: compiled(feats)[0]


def _build_onnx(wrapper: Any, example: dict[str, np.ndarray], input_names: tuple[str, ...],
                out: Path, stage: Callable[[str], None]) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = out / "fp32.onnx"
    axes = {n: {0: "batch", 1: "tokens"} for n in input_names}
    axes["token_embeddings"] = {0: "batch", 1: "tokens"}
    stage(BUILD_STAGES["onnx-int8"][1])
    with torch.no_grad():
        # The TorchScript exporter: the dynamo one would need onnxscript, for no gain on a plain BERT graph.
        torch.onnx.export(wrapper, tuple(torch.from_numpy(example[k]) for k in input_names), str(fp32_path),
                          input_names=list(input_names), output_names=["token_embeddings"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    # Dynamic int8: weights quantised offline, activations per batch at run time. Per-channel weights, MatMul
    # only: measured mean cosine to fp32 0.9925, against 0.952 for the per-tensor default (which also
    # quantises the embedding Gather) and 0.980 for uint8 weights.
    stage(BUILD_STAGES["onnx-int8"][2])
    root_log = logging.getLogger()
    level = root_log.level
    root_log.setLevel(logging.ERROR)  # its "consider pre-processing" advice goes to the root logger
    try:
        quantize_dynamic(str(fp32_path), str(out / "model.onnx"), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], per_channel=True)
    finally:
        root_log.setLevel(level)
    fp32_path.unlink()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    return lambda feats: session.run(None, feats)[0]


# --------------------------------------------------------------------------------------------- running


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """sentence-transformers' Pooling, in numpy, over right-padded hidden states [batch, tokens, dim]."""
    m = mask.astype(np.float32)[..., None]
    if mode == "cls":
        return hidden[:, 0].astype(np.float32)
    if mode == "lasttoken":
        last = np.maximum(mask.sum(axis=1) - 1, 0)
        return hidden[np.arange(hidden.shape[0]), last].astype(np.float32)
    if mode == "max":
        return np.where(m > 0, hidden, -1e9).max(axis=1).astype(np.float32)
    summed = (hidden * m).sum(axis=1)
    counts = np.maximum(m.sum(axis=1), 1e-9)
    return (summed / (np.sqrt(counts) if mode == "mean_sqrt_len_tokens" else counts)).astype(np.float32)


# Texts per forward pass. Batches are length-sorted, so a small batch wastes no padding, and ONNX Runtime's
# arena keeps what its largest batch needed (attention grows with batch x tokens^2). Encoding 560 speed-corpus
# passages on 2 lanes: 64 at a time peaked at 2.0 GB RSS, 16 at 0.75 GB and 40 passages/s, 2 at 0.34 GB and
# 43-47/s. OpenVINO measured no better below 16. (torch keeps 64: it was slower at 16.)
INT8_BATCH = {"onnx-int8": 2, "openvino-int8": 16}
PROBE_TEXT = "qabot checks its cached encoder against this sentence before using it."
# Runs of one model agree to ~1e-6 whatever the thread count; any damage that matters moves it much further.
PROBE_MIN_COSINE = 0.999
# Threads for a question (up to SMALL_BATCH texts). ONNX Runtime on 2 threads: one question's encode p50
# 5.0 ms against 6.2-6.5 on one. More were not measured: a 15-token question leaves little work per op.
# OpenVINO keeps one (not measured on more). Worker threads spin only this long between ops: by default
# they spun on after the run, 16 ms of CPU per question against 7 on one thread; capped, 10 ms.
QUESTION_THREADS = {"onnx-int8": 2, "openvino-int8": 1}
SPIN_US = 100


class Int8Encoder:
    """An Encoder over a cached int8 model: tokenizers (Rust) + OpenVINO or ONNX Runtime + numpy pooling."""

    def __init__(self, name: str, *, backend: str = "openvino-int8", threads: int | None = None,
                 cache_dir: Path | None = None) -> None:
        if backend not in INT8_BACKENDS:
            raise QabotError(f"Not an int8 backend: {backend!r} (choose {', '.join(INT8_BACKENDS)})")
        offline_env()
        self._runtime = _import_runtime(backend)
        self.name = canonical_model_name(name)
        self.backend = backend
        self.vectors = vectors_of(backend)
        self._dir = ensure_built(self.name, backend, cache_dir)
        self._batch = INT8_BATCH[backend]
        meta = Int8Meta.read(self._dir / "meta.json")
        self._meta = meta
        self.dimension = meta.dimension
        self.max_tokens = meta.max_tokens
        from tokenizers import Tokenizer

        # Two copies: one truncating exactly like encode() (max_tokens), one counting the untruncated length.
        try:
            self._tok = Tokenizer.from_file(str(self._dir / "tokenizer.json"))
        except Exception as exc:
            raise self._broken(exc) from exc
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=meta.max_tokens)
        self._count_tok = Tokenizer.from_file(str(self._dir / "tokenizer.json"))
        self._count_tok.no_padding()
        self._count_tok.no_truncation()
        self._max_threads = max(1, threads or os.cpu_count() or 1)
        self._question_threads = min(self._max_threads, QUESTION_THREADS[backend])
        # Up to SMALL_BATCH texts (a question) run on QUESTION_THREADS; ingest runs one single-thread runner
        # per core side by side (_run_batches). A runtime fixes its threads when compiled, so runners are
        # keyed by (threads, lane) and compiled on first use (~60 MB each, so a process that only ingests
        # never holds the question runner; the bot warms it up at start).
        self._runners: dict[tuple[int, int], Callable[[dict[str, np.ndarray]], np.ndarray]] = {}
        self._lock = threading.Lock()

    def _broken(self, exc: BaseException) -> QabotError:
        return QabotError(f"The cached {self.backend} encoder in {self._dir} cannot be loaded ({type(exc).__name__}: "
                          f"{(str(exc).strip().splitlines() or [''])[0][:200]}): delete that directory and it is "
                          "rebuilt on the next start.")

    def _runner(self, threads: int, slot: int = 0) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        """A runner on `threads` threads; `slot` tells apart single-thread runners used side by side."""
        run = self._runners.get((threads, slot))
        if run is not None:
            return run
        try:
            run = self._compile(threads)
        except QabotError:
            raise
        except Exception as exc:  # a model file the runtime cannot parse (corrupted after it was built)
            raise self._broken(exc) from exc
        self._check_probe(run)
        self._runners[(threads, slot)] = run
        return run

    def _check_probe(self, run: Callable[[dict[str, np.ndarray]], np.ndarray]) -> None:
        """The runner must give PROBE_TEXT the vector the build recorded (one short forward pass)."""
        want = np.asarray(self._meta.probe, dtype=np.float32)
        if not len(want):
            return
        try:
            hidden, mask = self._hidden(self._tokenize([PROBE_TEXT]), run)
        except Exception as exc:  # a model the runtime loads but cannot run (wrong shapes)
            raise self._broken(exc) from exc
        got = normalize_rows(pool(hidden, mask, self._meta.pooling))[0]
        cosine = float(got @ want) if got.shape == want.shape else -1.0
        if cosine < PROBE_MIN_COSINE:
            raise QabotError(f"The cached {self.backend} encoder in {self._dir} no longer gives the vectors it gave "
                             f"when built (cosine {cosine:.3f} on its check sentence; a model file changed in "
                             "place?): delete that directory and it is rebuilt on the next start.")

    def _compile(self, threads: int) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        if self.backend == "openvino-int8":
            ov = self._runtime
            core = ov.Core()
            # OpenVINO's compiled-blob cache: compiling the model takes ~1.4 s, loading the blob ~0.15 s.
            core.set_property({"CACHE_DIR": str(self._dir / "compiled")})
            compiled = core.compile_model(
                str(self._dir / "model.xml"), "CPU",
                {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"},
            )
            request = compiled.create_infer_request()

            def run(feats: dict[str, np.ndarray]) -> np.ndarray:
                return np.array(request.infer(feats)[0], dtype=np.float32, copy=True)  # the buffer is reused
        else:
            ort = self._runtime
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.spin_duration_us", str(SPIN_US))
            session = ort.InferenceSession(str(self._dir / "model.onnx"), opts, providers=["CPUExecutionProvider"])

            def run(feats: dict[str, np.ndarray]) -> np.ndarray:
                return session.run(None, feats)[0]
        return run

    def count_tokens(self, text: str) -> int:
        return len(self._count_tok.encode(text, add_special_tokens=True).ids)

    def _tokenize(self, texts: Sequence[str]) -> list[Any]:
        return self._tok.encode_batch(list(texts), add_special_tokens=True)

    def _features(self, encs: Sequence[Any]) -> dict[str, np.ndarray]:
        rows = [{"input_ids": e.ids, "attention_mask": e.attention_mask, "token_type_ids": e.type_ids} for e in encs]
        feats = pad_batch(rows, self._meta.pad_id)
        return feats

    def _hidden(self, encs: Sequence[Any], run: Callable[[dict[str, np.ndarray]], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        feats = self._features(encs)
        return run({k: feats[k] for k in self._meta.input_names}), feats["attention_mask"]

    def _run_batches(self, encs: Sequence[Any], batch_size: int,
                     ) -> Iterator[tuple[list[int], tuple[np.ndarray, np.ndarray]]]:
        """(batch, (hidden, mask)) for length-sorted batches of encs. A few texts (a question) run on the
        question runner (QUESTION_THREADS); several batches (ingest) run side by side, one single-thread
        runner per core, each taking the next batch, so no thread waits on another inside a forward pass:
        on 2 cores 38-40 texts/s against 34-37 for one 2-thread runner. One batch alone gets every core."""
        batches = length_batches([len(e.ids) for e in encs], batch_size)
        lanes = min(self._max_threads, len(batches))
        if len(encs) <= SMALL_BATCH or lanes <= 1:
            run = self._runner(self._question_threads if len(encs) <= SMALL_BATCH else self._max_threads)
            for batch in batches:
                yield batch, self._hidden([encs[i] for i in batch], run)
            return
        idle: queue.SimpleQueue[Callable[[dict[str, np.ndarray]], np.ndarray]] = queue.SimpleQueue()
        for lane in range(lanes):
            idle.put(self._runner(1, lane))

        def job(batch: list[int]) -> tuple[list[int], tuple[np.ndarray, np.ndarray]]:
            run = idle.get()
            try:
                return batch, self._hidden([encs[i] for i in batch], run)
            finally:
                idle.put(run)

        with ThreadPoolExecutor(lanes, thread_name_prefix="qabot-encode") as workers:
            yield from workers.map(job, batches)

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        with self._lock:
            encs = self._tokenize(texts)
            for batch, (hidden, mask) in self._run_batches(encs, batch_size or self._batch):
                out[batch] = pool(hidden, mask, self._meta.pooling)
        return normalize_rows(out)

    def token_embeddings(self, texts: Sequence[str], *, batch_size: int | None = None) -> list[TokenEmbeddings]:
        """Per text: final-layer token vectors before pooling and their char offsets (see TokenEmbeddings)."""
        out: list[TokenEmbeddings] = []
        if not texts:
            return out
        slots: list[TokenEmbeddings | None] = [None] * len(texts)
        with self._lock:
            encs = self._tokenize(texts)
            for batch, (hidden, _) in self._run_batches(encs, batch_size or self._batch):
                for j, i in enumerate(batch):
                    n = len(encs[i].ids)
                    slots[i] = (np.ascontiguousarray(hidden[j, :n], dtype=np.float32),
                                np.asarray(encs[i].offsets, dtype=np.int64).reshape(n, 2))
        return [s for s in slots if s is not None]
