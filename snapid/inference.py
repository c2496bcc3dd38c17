"""Offline batch prediction: ``snapid.load(BUNDLE).predict(photos)``, behind `snapid predict`.

The server's own functions without the HTTP around them, so a photo gets the same probabilities here
as from ``POST /api/v1/predict`` on the same bundle:
 - ``load_model`` opens and verifies the bundle (every sha256, the graph, a test batch);
 - each photo is read (``images.read_file``) and prepared by ``prepare_photo`` (mode each / one), or
   detected and cropped by ``detect_and_crop`` (mode detect), on a small thread pool, a bounded number
   of photos ahead of the model;
 - batches of up to ``batch_size`` rows run through ``LoadedModel.probabilities`` (softmax of the logits
   over the bundle's temperature) on the calling thread, while the pool decodes the next photos;
 - ``answers.answer`` turns each row into the top k, display names and the unknown flag.

A file that cannot be read is answered with its reason (``Answer.error``), never raised. In-memory
pictures (PIL images, NumPy arrays) are turned upright and to RGB as the decoder does, then passed to
the same path as a lossless BMP. Nothing here imports torch: the serving extra has none.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from snapid import images
from snapid.config import Settings
from snapid.data.sources.common import is_image, walk_files
from snapid.errors import NotFound, SnapidError, TooManyPixels, UsageError
from snapid.serve.services import answers
from snapid.serve.services.detector import detect_and_crop
from snapid.serve.services.model import LoadedModel, load_model
from snapid.serve.services.preprocess import prepare_photo
from snapid.workspace import Workspace

MODES = ("each", "one", "detect")
# Photos per model run. Small on purpose: on 2 cores a MobileNetV2 at 224 px took 7.6 ms per photo in batches
# of 2 against 11.3 in batches of 32 (the activations of a large batch leave the cache); with one decode
# thread beside the model, batches of 2 / 4 / 8 / 16 gave 128 / 122 / 114 / 110 photos/s (docs/benchmarks.md).
BATCH_SIZE = 4
GLOB_CHARS = frozenset("*?[")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Answer:
    """One answer: a photo (mode each), the photos together (mode one) or one detected object (mode detect)."""
    source: str                                  # the file as given, "<image N>" / "<array N>" for pictures in memory
    label: str | None = None                     # class id of the best match; None when the photo could not be read
    name: str | None = None                      # its display name (in ``lang`` when the bundle has one)
    score: float | None = None                   # its calibrated probability, rounded to 6 places as the API does
    unknown: bool = False                        # best score under the bundle's threshold: "not sure"
    top: tuple[tuple[str, str, float], ...] = ()  # (label, name, score) of the top k, best first
    error: str | None = None                     # "code: reason" when the photo could not be read
    photo: int | None = None                     # index of the photo in the input (None: several, mode one)
    box: tuple[float, float, float, float] | None = None   # detect: x1, y1, x2, y2 in upright pixels; None: whole photo
    detector_score: float | None = None          # detect: the detector's score for the box

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Input:
    source: str
    read: Callable[[], bytes]
    name: tuple[str, ...]                        # prefixes the decoder's messages may start with


class Model:
    """A verified bundle, ready to predict; made by `load`."""

    def __init__(self, loaded: LoadedModel, path: Path, *, limits: images.DecodeLimits, batch_size: int = BATCH_SIZE,
                 threads: int = 2):
        self.loaded, self.path, self.limits = loaded, path, limits
        self.batch_size, self.threads = max(1, int(batch_size)), max(1, int(threads))

    def __repr__(self) -> str:
        return f"<snapid.Model {self.name} v{self.version} ({len(self.labels)} classes) from {self.path}>"

    @property
    def name(self) -> str:
        return self.loaded.bundle.name

    @property
    def version(self) -> str:
        return self.loaded.bundle.version

    @property
    def sha256(self) -> str:
        return self.loaded.bundle.sha256

    @property
    def labels(self) -> list[str]:
        """The class ids, in the model's output order."""
        return [c["id"] for c in self.loaded.labels]

    @property
    def threshold(self) -> float:
        return self.loaded.threshold

    @property
    def has_detector(self) -> bool:
        return self.loaded.detector is not None

    def predict(self, items, *, top_k: int = 5, lang: str | None = None, mode: str = "each",
                progress: Progress | None = None) -> list[Answer]:
        """Answers for ``items``: one file path (str or Path), PIL image or NumPy array (H x W x 3 uint8 RGB,
        H x W x 4 RGBA or H x W grey), or a list of them.

        mode "each": one answer per photo, in order. "one": the photos show one object; a single answer
        from their averaged probabilities (the API's mode=same), followed by an answer per unreadable photo.
        "detect" (bundles with a detector): an answer per detected object with its box, or the whole photo
        when nothing is found, for each photo in order. ``progress(done, total)`` is called as photos finish."""
        mode = getattr(mode, "value", mode)
        if mode not in MODES:
            raise UsageError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if mode == "detect" and not self.has_detector:
            raise UsageError(f"mode 'detect': the bundle {self.path} has no detector (export it with --detector)")
        if not isinstance(top_k, int) or top_k < 1:
            raise UsageError(f"top_k {top_k!r}: expected a whole number of at least 1")
        inputs = self._inputs(items)
        report = progress or (lambda done, total: None)
        report(0, len(inputs))
        out: list[Answer] = []
        failed: list[Answer] = []
        rows: list[np.ndarray] = []
        for n, (index, meta, probs, error) in enumerate(self._run(inputs, detect=mode == "detect"), 1):
            source = inputs[index].source
            if error is not None:
                (failed if mode == "one" else out).append(Answer(source=source, error=error, photo=index))
            elif mode == "one":
                rows.append(probs[0])
            elif mode == "each":
                out.append(self._answer(probs[0], source=source, k=top_k, lang=lang, photo=index))
            else:
                out.extend(self._objects(meta, probs, source=source, k=top_k, lang=lang, photo=index))
            if n % self.batch_size == 0 or n == len(inputs):
                report(n, len(inputs))
        if mode == "one" and rows:
            unread = {a.photo for a in failed}
            read = [item.source for i, item in enumerate(inputs) if i not in unread]
            out.append(self._answer(np.stack(rows).mean(axis=0), source="; ".join(read), k=top_k, lang=lang,
                                    photo=None))
        return out + failed

    # --- answers -----------------------------------------------------------------------------------
    def _answer(self, probs: np.ndarray, *, source: str, k: int, lang: str | None, photo: int | None,
                **extra) -> Answer:
        body = answers.answer(self.loaded, probs, k=k, lang=lang)
        top = tuple((p["id"], p["display_name"], p["score"]) for p in body["predictions"])
        return Answer(source=source, label=top[0][0], name=top[0][1], score=top[0][2], unknown=body["unknown"], top=top,
                      photo=photo, **extra)

    def _objects(self, found, probs: np.ndarray, *, source: str, k: int, lang: str | None, photo: int) -> list[Answer]:
        """Detect mode, one photo: an answer per detection, or the whole photo's when nothing was found."""
        if found.fallback:
            return [self._answer(probs[0], source=source, k=k, lang=lang, photo=photo)]
        return [self._answer(row, source=source, k=k, lang=lang, photo=photo, box=tuple(d.box),
                             detector_score=round(min(1.0, max(0.0, d.score)), 6))
                for d, row in zip(found.detections, probs, strict=True)]

    # --- the pipeline ------------------------------------------------------------------------------
    def _run(self, inputs: list[_Input], *,
             detect: bool) -> Iterator[tuple[int, object, np.ndarray | None, str | None]]:
        """(index, detections or None, probabilities K x C or None, error or None) per input, in order; the
        model runs once per ``batch_size`` rows while the pool decodes ahead."""
        spec, limits, detector = self.loaded.spec, self.limits, self.loaded.detector

        def work(item: _Input):
            try:
                data, name = item.read(), item.source
                if detect:
                    found = detect_and_crop(data, detector, spec, limits, name)
                    return found.inputs, found, None
                return prepare_photo(data, spec, limits, name)[None], None, None
            except (SnapidError, OSError) as exc:
                return None, None, _reason(exc, item.name)

        pending: list[tuple[int, np.ndarray | None, object, str | None]] = []
        rows = 0
        ordered = _ordered(work, inputs, self.threads, self.batch_size + 2 * self.threads)
        for index, (x, meta, error) in enumerate(ordered):
            pending.append((index, x, meta, error))
            rows += 0 if x is None else len(x)
            if rows >= self.batch_size:
                yield from self._flush(pending)
                pending, rows = [], 0
        yield from self._flush(pending)

    def _flush(self, pending: list) -> Iterator[tuple[int, object, np.ndarray | None, str | None]]:
        arrays = [x for _, x, _, _ in pending if x is not None]
        try:
            probs = self.loaded.probabilities(np.concatenate(arrays)) if arrays else None
        except Exception as exc:  # ONNX Runtime raises its own types; the model is at fault, not a photo
            raise SnapidError(f"{self.path}: the model failed on a batch of {len(arrays)} photos "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''})",
                              code="inference_failed") from None
        start = 0
        for index, x, meta, error in pending:
            if x is None:
                yield index, meta, None, error
                continue
            yield index, meta, probs[start:start + len(x)], None
            start += len(x)

    def _inputs(self, items) -> list[_Input]:
        if isinstance(items, (str, os.PathLike, Image.Image)) or (isinstance(items, np.ndarray) and items.ndim < 4):
            items = [items]
        out = []
        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                source, path = os.fspath(item), Path(item)
                out.append(_Input(source, lambda path=path: images.read_file(path, self.limits.max_bytes),
                                  (source, str(path))))
            elif isinstance(item, Image.Image):
                out.append(_Input(f"<image {i}>", lambda item=item, i=i: self._bmp(item, f"<image {i}>"),
                                  (f"<image {i}>",)))
            elif isinstance(item, np.ndarray):
                picture = _array_picture(item, i)
                out.append(_Input(f"<array {i}>", lambda p=picture, i=i: self._bmp(p(), f"<array {i}>"),
                                  (f"<array {i}>",)))
            else:
                raise UsageError(f"item {i}: a {type(item).__name__}; "
                                 "expected a file path, a PIL image or a NumPy array")
        return out

    def _bmp(self, im: Image.Image, name: str) -> bytes:
        """A picture in memory → lossless BMP bytes for the decoder: upright (EXIF) and RGB (alpha on white),
        refused above the pixel cap before any conversion."""
        width, height = im.size
        if width * height > self.limits.max_pixels:
            raise TooManyPixels(f"{name}: {width}x{height} is {width * height:,} pixels, above the cap of "
                                f"{self.limits.max_pixels:,}")
        if images.orientation(im) != 1:
            im = ImageOps.exif_transpose(im)
        buffer = io.BytesIO()
        images.to_rgb(im).save(buffer, "BMP")
        return buffer.getvalue()


def _array_picture(array: np.ndarray, i: int) -> Callable[[], Image.Image]:
    """H x W (grey), H x W x 3 (RGB) or H x W x 4 (RGBA) uint8 → a PIL image, made on the pool's thread."""
    mode = {2: "L"}.get(array.ndim) or (array.ndim == 3 and {3: "RGB", 4: "RGBA"}.get(array.shape[2]))
    if array.dtype != np.uint8 or not mode:
        raise UsageError(f"item {i}: an array of {array.dtype} with shape {array.shape}; expected uint8 H x W x 3 "
                         "(RGB), H x W x 4 (RGBA) or H x W (grey)")
    return lambda: Image.fromarray(np.ascontiguousarray(array), mode)


def _ordered(work, items: list, threads: int, ahead: int) -> Iterator:
    """``work(item)`` for every item on ``threads`` threads, results in order, at most ``ahead`` in flight."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix="snapid-predict")
    window: deque = deque()
    try:
        for item in items:
            window.append(pool.submit(work, item))
            if len(window) >= ahead:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _reason(exc: Exception, names: tuple[str, ...]) -> str:
    """"code: reason" for a photo that could not be read, without the file name the message starts with."""
    if isinstance(exc, SnapidError):
        text = exc.message
        for name in names:
            text = text.removeprefix(f"{name}: ")
        return f"{exc.code}: {text}"
    if isinstance(exc, FileNotFoundError):
        return "not_found: no such file"
    if isinstance(exc, IsADirectoryError):
        return "not_a_file: a folder, not a photo"
    return f"unreadable_file: {exc.strerror or exc}"


# --- what to load -----------------------------------------------------------------------------------
def load(source: str | os.PathLike, *, home: str | os.PathLike | None = None, batch_size: int = BATCH_SIZE,
         threads: int | None = None) -> Model:
    """Open a bundle for prediction: a bundle folder, a .snapid (or .zip) file, or a run name (its newest
    exported bundle in the workspace ``home``, default $SNAPID_HOME). Every file is verified first.

    ``threads`` decode photos (default: the cores but one, 1 to 4) while the calling thread runs the model on
    the remaining cores (SNAPID_INFERENCE_THREADS when set), ``batch_size`` photos at a time."""
    settings = Settings(home=Path(home)) if home is not None else Settings()
    path = resolve(source, settings=settings)
    limits = images.DecodeLimits.from_settings(settings)
    cores = os.cpu_count() or 1
    threads = max(1, threads or min(4, cores - 1))
    loaded = load_model(path, threads=settings.inference_threads or max(1, cores - threads))
    return Model(loaded, path, limits=limits, batch_size=batch_size, threads=threads)


def resolve(source: str | os.PathLike, *, settings: Settings) -> Path:
    """The bundle ``source`` names: an existing folder or file as given, else the newest bundle exported
    from the run of that name (its recorded export, else $SNAPID_HOME/bundles/NAME)."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        return path.resolve()
    if os.sep in text or text.endswith((".snapid", ".zip")):
        raise NotFound(f"{text}: no such bundle folder or .snapid file")
    workspace = Workspace(Path(settings.home).expanduser().resolve())  # not Workspace.at: a typo creates nothing
    recorded = _exported(text, settings, workspace)
    if recorded is not None:
        return recorded
    if (workspace.bundles / text / "manifest.json").is_file():
        return workspace.bundles / text
    raise NotFound(f"run {text!r} has no exported bundle yet: run `snapid export {text}` first")


def _exported(name: str, settings: Settings, workspace: Workspace) -> Path | None:
    """The bundle recorded by the run's newest export, if it is still there; NotFound when no run has that name
    (and no bundle folder of that name exists)."""
    if settings.db_url is None and not workspace.database.is_file():
        runs = None
    else:
        from snapid.track import runs as track
        from snapid.track.db import get_engine, transaction

        try:
            with transaction(get_engine(settings.resolved_db_url())) as s:
                runs = [a for a in track.artifacts(s, name=name) if a["kind"] == "bundle"]
        except NotFound:
            runs = None
    if runs is None:
        if (workspace.bundles / name / "manifest.json").is_file():
            return None
        raise NotFound(f"{name!r} is not a bundle folder, a .snapid file or a run name "
                       "(`snapid runs list` shows the runs)")
    for artifact in runs:
        for candidate in (artifact["path"], artifact["meta"].get("archive")):
            if candidate and Path(candidate).exists():
                return Path(candidate)
    return None


def expand_paths(patterns: Iterable[str | os.PathLike]) -> list[Path]:
    """Photos named on a command line: files as given, folders recursively (image extensions only, hidden
    files and symlinked folders skipped), and globs expanded here (a quoted glob arrives unexpanded).
    Order is kept and duplicates dropped; a name that matches nothing is kept, to be reported as missing."""
    import glob

    found: dict[Path, None] = {}
    for pattern in patterns:
        text = os.fspath(pattern)
        path = Path(text).expanduser()
        if path.is_dir():
            matches = [path / rel for rel in walk_files(path) if is_image(rel)]
        elif path.exists() or not GLOB_CHARS & set(text):
            matches = [path]
        else:
            matches = []
            for hit in sorted(glob.glob(os.path.expanduser(text), recursive=True)):
                hit_path = Path(hit)
                if hit_path.is_dir():
                    matches.extend(hit_path / rel for rel in walk_files(hit_path) if is_image(rel))
                elif is_image(hit):
                    matches.append(hit_path)
            matches = matches or [path]
        found.update(dict.fromkeys(matches))
    return list(found)
