"""The StyleBench-S generation engine behind `styleid generate` (the command and its README: cli.py).

A run, on every process of an `accelerate launch` (or the one process of a plain run):

1. the main process takes the output folder's lock and reconciles the manifest (manifest.py): merges the
   parts a killed run left, drops records whose file is gone, deletes half-written temp files;
2. sources: the sorted source list is split between processes (`PartialState().split_between_processes`);
   each photo is read, its face detected (the detector the stylizers use), and written as
   OUT/p3/{id}.png with a manifest record. Unreadable photos and photos without a face are reported and
   skipped;
3. images: every process reads the same merged records, builds the same sorted work list
   (method, id, style, level) over the sources that have a p3 record, and takes its contiguous chunk.
   An image is skipped when its record asks for exactly the same thing (prompt, level, seed, overrides,
   models, dtype, source bytes) and its file is there; a record asking for something else is an error
   (the folder would mix two settings). Each image: seed = item_seed(seed, id, method, style, level),
   PNG bytes written atomically, then the record appended to this process's part;
4. the main process merges the parts into manifest.jsonl, writes stylebench.json and, if asked, pairs.csv.

Nothing depends on which process made an image or what it made before: the same item gives the same
bytes in a 1-process run, a 2-process run, or a resumed one.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ...errors import NoFaceError, StyleIDError
from ...files.atomic import atomic_write, check_writable_dir
from ...files.digest import sha256_file
from ...options import detector_for
from ..layout import Item, Source, item_seed, source_relpath, work_list
from ..manifest import ManifestPart, on_disk, read_records, reconcile, run_lock

STYLEBENCH_JSON = "stylebench.json"
REQUEST_KEYS = ("kind", "id", "method", "style", "prompt", "level", "seed", "overrides", "models", "dtype",
                "source", "source_sha256")


@dataclass
class GenerateConfig:
    sources: list[Source]
    output: Path
    cells: list[tuple[str, str, int]]  # (method, style, level), from layout.plan_cells
    styles: dict[str, str]  # style → prompt
    seed: int = 0
    tiny: bool = False
    device: str | None = None
    precision: str = "auto"
    detector: str | None = None  # None: mtcnn with tiny models, retinaface otherwise
    model_rootpath: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # pipeline arguments that replace the presets'
    pairs: Path | None = None
    progress: bool = True


@dataclass
class GenerateResult:
    made: int  # images made by this process
    total: int  # image records in the manifest for the plan (main process; -1 elsewhere)
    new_records: int  # records added by the whole run (main process)
    skipped_sources: list[str]
    no_face_images: int
    seconds: float  # the whole run, this process
    image_seconds: float = 0.0  # making images, model loading excluded, this process
    pairs_rows: int | None = None
    lonely_cells: int = 0
    is_main: bool = True
    num_processes: int = 1


def _report(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def _png_bytes(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")  # no metadata: the manifest holds it, and the bytes stay reproducible
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("styleid-guidance")
    except PackageNotFoundError:  # not installed (a source checkout on PYTHONPATH)
        return "unknown"


def _state() -> Any:
    """accelerate's process state. PartialState() alone ignores ACCELERATE_USE_CPU (only Accelerator reads it)
    and, without CUDA, would leave every launched process thinking it is alone: ask for CPU ranks then."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def generate(config: GenerateConfig, report: Callable[[str], None] = _report) -> GenerateResult:
    """Make the images of `config` (see the module docstring); safe to re-run and to kill."""
    from ...devices import resolve_device
    from .models import Loader, resolve_dtype

    started = time.perf_counter()
    out = Path(config.output)
    check_writable_dir(out)
    state = _state()
    if int(os.environ.get("WORLD_SIZE", "1")) != state.num_processes:  # every process would do all the work
        raise StyleIDError(f"launched as one of {os.environ['WORLD_SIZE']} processes, but accelerate set up "
                           f"{state.num_processes}; check the accelerate launch flags (CPU runs need ACCELERATE_USE_CPU=1)")
    device = state.device if state.num_processes > 1 else resolve_device(config.device)
    dtype = resolve_dtype(config.precision, device, config.tiny)
    detector = detector_for(config.detector, config.tiny)
    loader = Loader(config.tiny, device, dtype, detector, config.model_rootpath)
    main = state.is_main_process

    with run_lock(out) if main else contextlib.nullcontext():
        before = reconcile(out) if main else {}
        state.wait_for_everyone()
        with ManifestPart(out) as part:
            with state.split_between_processes(list(config.sources)) as mine:
                _sources_phase(list(mine), out, read_records(out), detector, config.model_rootpath, part, report)
            state.wait_for_everyone()  # every p3 record is durable before anyone plans the images
            records = read_records(out)
            ids = [s.id for s in config.sources if _source_ok(out, records.get(source_relpath(s.id)))]
            skipped = [s.id for s in config.sources if s.id not in set(ids)]
            items = work_list(config.cells, ids)
            with state.split_between_processes(items) as mine:
                made, no_face, image_seconds = _images_phase(list(mine), out, records, config, loader, dtype, device, part, report,
                                              bar_label=f"generate [{state.process_index + 1}/{state.num_processes}]"
                                              if state.num_processes > 1 else "generate", show=config.progress and main)
        state.wait_for_everyone()
        result = GenerateResult(made, -1, 0, skipped, no_face, 0.0, image_seconds,
                                is_main=main, num_processes=state.num_processes)
        if main:
            after = reconcile(out)
            wanted = {item.relpath for item in items}
            result.total = sum(1 for p in after if p in wanted)
            result.new_records = sum(1 for p, r in after.items() if before.get(p) != r)
            _write(out / STYLEBENCH_JSON, (json.dumps({"idx_is_level": True, "layout": "StyleBench-S",
                                                       "manifest": "manifest.jsonl"}, indent=2) + "\n").encode())
            if config.pairs is not None:
                from .pairs import write_pairs

                result.pairs_rows, result.lonely_cells = write_pairs(config.pairs, out, after, config.cells, config.seed)
    result.seconds = time.perf_counter() - started
    return result



def _source_ok(out: Path, record: dict[str, Any] | None) -> bool:
    return record is not None and record.get("kind") == "source" and on_disk(out, record)


def _sources_phase(sources: Sequence[Source], out: Path, records: dict[str, dict[str, Any]], detector: str,
                   model_rootpath: str | None, part: ManifestPart, report: Callable[[str], None]) -> list[str]:
    """Write p3/{id}.png for this process's share; returns the ids skipped (unreadable / no face)."""
    from ...faces.detection import largest_face
    from ...files.images import load_image

    skipped = []
    for source in sources:
        rel = source_relpath(source.id)
        try:
            original_sha = sha256_file(source.path)
        except OSError as err:
            report(f"skipped {source.path}: cannot read it ({err.strerror or type(err).__name__})")
            skipped.append(source.id)
            continue
        record = records.get(rel)
        if record is not None and record.get("original_sha256") != original_sha:
            raise StyleIDError(f"{source.path}: differs from the photo {out / rel} was made from; "
                               "use another output folder, or delete that folder's images of this id")
        if _source_ok(out, record):
            continue
        try:
            image = load_image(source.path)
        except StyleIDError as err:  # damaged, empty, odd format: this photo's problem, not the run's
            report(f"skipped {source.path}: {str(err).removeprefix(str(source.path) + ': ')}")
            skipped.append(source.id)
            continue
        try:
            largest_face(image, detector, model_rootpath, name=str(source.path))
        except NoFaceError:  # any other detector error (missing weights, ...) stops the run: it hits every photo
            report(f"skipped {source.path}: no face found")
            skipped.append(source.id)
            continue
        data = _png_bytes(image)
        _write(out / rel, data)
        part.append({"path": rel, "kind": "source", "id": source.id, "original": str(source.path),
                     "original_sha256": original_sha, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return skipped


def request(item: Item, config: GenerateConfig, source_record: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """What an image is made from: two runs that agree on all of it make the same bytes (on one device type)."""
    return {"kind": "stylized", "id": item.id, "method": item.method, "style": item.style,
            "prompt": config.styles[item.style], "level": item.level,
            "seed": item_seed(config.seed, item.id, item.method, item.style, item.level),
            "overrides": json.loads(json.dumps(config.overrides)), "models": _models(item.method, config.tiny),
            "dtype": str(dtype).removeprefix("torch."), "source": source_record["path"],
            "source_sha256": source_record["sha256"]}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


@functools.lru_cache(maxsize=None)
def _model_json(method: str, tiny: bool) -> str:
    from .models import model_ids

    return json.dumps(model_ids(method, tiny))


def _models(method: str, tiny: bool) -> dict[str, Any]:
    return json.loads(_model_json(method, tiny))


def _images_phase(items: Sequence[Item], out: Path, records: dict[str, dict[str, Any]], config: GenerateConfig,
                  loader: Any, dtype: Any, device: Any, part: ManifestPart, report: Callable[[str], None],
                  bar_label: str, show: bool) -> tuple[int, int, float]:
    from tqdm import tqdm

    from ...files.images import load_image
    from .models import call_params

    todo = []
    for item in items:
        want = request(item, config, records[source_relpath(item.id)], dtype)
        have = records.get(item.relpath)
        if have is not None:
            differ = [k for k in REQUEST_KEYS if have.get(k) != want[k]]
            if differ:
                first = differ[0]
                raise StyleIDError(f"{out / item.relpath}: made earlier with other settings ({', '.join(differ)} differ; "
                                   f"{first} was {_short(have.get(first))}, now {_short(want[first])}); "
                                   "use another output folder, or delete the images made with the old settings")
            if on_disk(out, have):
                continue
        todo.append((item, want))
    faces: collections.OrderedDict[str, Any] = collections.OrderedDict()
    no_face: set[tuple[str, str]] = set()
    made, seconds = 0, 0.0
    with tqdm(total=len(todo), unit="img", desc=bar_label, disable=not show, dynamic_ncols=True, file=sys.stderr) as bar:
        for item, want in todo:
            if (item.method, item.id) in no_face:
                bar.update(1)
                continue
            stylizer = loader.get(item.method)
            tick = time.perf_counter()  # after loading: the rate is of making images, comparable across runs
            if item.id not in faces:
                faces[item.id] = load_image(out / want["source"])
                while len(faces) > 2:
                    faces.popitem(last=False)
            params = call_params(stylizer, item.level, config.overrides)
            try:
                image = stylizer(faces[item.id], want["prompt"], strength_level=item.level, seed=want["seed"], **params)
            except NoFaceError:
                report(f"skipped {item.method} images of {item.id}: its stylizer found no face in {want['source']}")
                no_face.add((item.method, item.id))
                bar.update(1)
                continue
            data = _png_bytes(image)
            _write(out / item.relpath, data)
            part.append({**want, "path": item.relpath, "params": json.loads(json.dumps(params, default=str)),
                         "device": device.type, "generator": f"styleid_guidance {_version()}",
                         "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
            made += 1
            seconds += time.perf_counter() - tick
            bar.update(1)
    return made, len(no_face), seconds
