"""Streaming inference: frames from a source, through a model, into sinks, as pipelined stages.

Sources: an image or a folder of images, a video file, an RTSP/HTTP/... URL, a V4L2 camera (``/dev/videoN``), all
decoded by PyAV (FFmpeg inside its wheel: the container header is read before anything is decoded, network opens
and reads time out, ``v4l2`` is an input format), and a GStreamer pipeline (any string with ``!``, e.g. a Jetson
CSI camera through ``nvarguscamerasrc``) through OpenCV's GStreamer backend. Every source yields H×W×3 uint8 RGB.

Stages, each in its own thread(s), joined by bounded queues: decode -> infer (``prepost.predict``) -> draw (the
overlay, only when a video is written) -> write (video, label PNGs, COCO JSON). A file source hands every frame on
(the decoder waits for a free place); a live source (URL, camera, pipeline) never waits: it keeps the newest frame
and counts the ones it replaced as dropped. A session that offers ``submit(batch)`` (the TensorRT session: a CUDA
stream with pinned buffers) gets two inference workers, so one frame's upload overlaps the other's compute; the
session itself owns no thread.

Bad input stops the stream with a ``SourceError`` after everything decoded before it has been processed and
written: a corrupt or truncated file, a frame size that changes mid-stream (the run stops there rather than
rescaling: see ``_check_size``), no frames at all, a source that disconnects. A stream stopped by the caller (Ctrl-C,
SIGTERM, leaving the loop) keeps what was written so far. The video is written under a temporary name and renamed
when finalised, so the requested name only ever holds a finished, playable file.
"""
from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeseg.errors import BackendError, EdgeSegError, SourceError

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://")
VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}
FOLDER_FPS = Fraction(1)  # a folder of images has no frame rate: its video shows each image for a second
_END = object()  # the end of a stream, passed down the queues


def source_kind(source: str) -> str:
    """What a SOURCE string names: gstreamer, url, device, folder, image or video (any other file: FFmpeg decides)."""
    from edgeseg.data.folder import IMAGE_SUFFIXES

    text = str(source)
    if text.lower().startswith(URL_SCHEMES):
        return "url"
    if "!" in text:
        return "gstreamer"
    if re.fullmatch(r"/dev/video\d+", text):
        return "device"
    path = Path(text)
    if path.is_dir():
        return "folder"
    return "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"


# ---------------------------------------------------------------- sources

class Source:
    """Frames to stream. ``frames()`` yields H×W×3 uint8 RGB arrays and raises ``SourceError`` on bad input.
    ``live``: frames come whether or not they are taken (keep the newest, drop the rest); ``fps``: the source's
    frame rate; ``count``: the frames its header promises (None: unknown)."""

    name = "source"
    live = False
    fps: Fraction = Fraction(30)
    count: int | None = None

    def frames(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageSource(Source):
    """Image files (a folder: its images in name order), one frame each, refused over ``max_pixels`` from the header."""

    fps = FOLDER_FPS

    def __init__(self, paths: list[Path], name: str, max_pixels: int | None = None):
        if not paths:
            raise SourceError(f"{name} holds no images", "pass a folder with PNG/JPEG/TIFF files, or a video")
        self.paths, self.name, self.count, self.max_pixels = paths, name, len(paths), max_pixels

    def frames(self) -> Iterator[np.ndarray]:
        from edgeseg.data import load_image
        from edgeseg.runtime.prepost import to_frame

        for path in self.paths:
            yield to_frame(load_image(path, 3, max_pixels=self.max_pixels))


def _reason(error: BaseException, timeout: float) -> str:
    import av

    if isinstance(error, (av.error.ExitError, av.error.TimeoutError)):  # the timeout's interrupt callback
        return f"no data for {timeout:g} s"
    return str(getattr(error, "strerror", None) or error or type(error).__name__)


class VideoSource(Source):
    """A video file, URL or V4L2 device through PyAV. The frame size is read from the container header and
    refused over ``max_pixels`` before a frame is decoded; URLs and devices give up after ``timeout`` seconds
    without data, when opening and when reading."""

    def __init__(self, source: str, kind: str, max_pixels: int | None = None, timeout: float = 10.0,
                 live: bool | None = None):
        import av

        from edgeseg.data.folder import pixel_limit

        limit = pixel_limit(max_pixels)
        self.name, self.timeout = str(source), timeout
        self.live = kind in ("url", "device") if live is None else live
        remote = kind in ("url", "device")
        options = {"rtsp_transport": "tcp"} if self.name.lower().startswith("rtsp") else {}
        start = time.monotonic()
        try:
            self.container = av.open(self.name, format="v4l2" if kind == "device" else None, options=options,
                                     timeout=(timeout, timeout) if remote else None)
        except av.error.FFmpegError as e:
            if isinstance(e, av.error.EOFError) and not remote:
                raise SourceError(f"{self.name} has no video frames (it ends before the first)",
                                  "pass a video with at least one frame") from None
            fix = (f"check the address and that the server or camera is up (waited up to {timeout:g} s; --timeout "
                   "changes it)") if remote else "pass a video file FFmpeg can read (mp4, mkv, avi, ts, ...)"
            timed_out = remote and time.monotonic() - start >= timeout  # FFmpeg's protocols report it as EIO, EXIT, ...
            reason = f"no data for {timeout:g} s" if timed_out else _reason(e, timeout)
            raise SourceError(f"cannot {'open' if remote else 'read'} {self.name}: {reason}", fix) from None
        try:
            if not self.container.streams.video:
                raise SourceError(f"{self.name} has no video stream (or one without frames)",
                                  "pass a video with at least one frame")
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "SLICE" if self.live else "AUTO"  # frame threads add a frame of latency
            w, h = self.stream.codec_context.width, self.stream.codec_context.height
            if w * h > limit:
                raise SourceError(f"{self.name}: its header says {w}×{h} = {w * h:,} pixels a frame, over the limit "
                                  f"of {limit:,}", "downscale it, or raise the limit with --max-pixels / EDGESEG_MAX_PIXELS")
            rate = self.stream.average_rate or self.stream.guessed_rate
            self.fps = Fraction(rate) if rate and rate > 0 else Fraction(30)
            self.count = int(self.stream.frames) or None
        except BaseException:
            self.container.close()
            raise

    def frames(self) -> Iterator[np.ndarray]:
        import av

        n = 0
        try:
            for frame in self.container.decode(self.stream):
                n += 1
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            if self.live and n:
                raise SourceError(f"{self.name} disconnected after {n} frame(s): {_reason(e, self.timeout)}",
                                  "the output so far is kept; check the network or camera and run again") from None
            raise SourceError(f"{self.name} is corrupt or truncated: decoding failed after {n} frame(s) "
                              f"({_reason(e, self.timeout)})",
                              "the output so far is kept; re-encode or re-download the video") from None
        if n == 0:
            raise SourceError(f"{self.name} has no video frames", "pass a video with at least one frame")
        if not self.live and self.count and n < self.count:
            raise SourceError(f"{self.name} is truncated: its header promises {self.count} frames, {n} could be decoded",
                              "the output so far is kept; re-encode or re-download the video")

    def close(self) -> None:
        self.container.close()


class GStreamerSource(Source):
    """A GStreamer pipeline ending in ``appsink`` (BGR frames), through OpenCV's GStreamer backend: on Jetson a CSI
    camera (``nvarguscamerasrc``) or NVDEC decoding (``nvv4l2decoder``). Needs an OpenCV built with GStreamer
    (JetPack's); pip's opencv-python is built without it."""

    def __init__(self, pipeline: str, max_pixels: int | None = None, live: bool | None = None):
        from edgeseg.data.folder import pixel_limit

        self.live = True if live is None else live  # a camera; a file through NVDEC: live=False, every frame

        try:
            import cv2
        except ImportError:
            raise BackendError("a GStreamer pipeline needs OpenCV built with GStreamer",
                               "on Jetson use JetPack's OpenCV (sudo apt install python3-opencv)") from None
        if not re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()):
            raise BackendError("this OpenCV is built without GStreamer",
                               "use JetPack's OpenCV (pip's opencv-python has no GStreamer), or a file, URL or /dev/video")
        self.cv2, self.name = cv2, pipeline
        self.capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        if not self.capture.isOpened():
            raise SourceError(f"GStreamer could not start the pipeline '{pipeline}'",
                              "test it with gst-launch-1.0 (ending in fakesink); it must end in "
                              "'videoconvert ! video/x-raw,format=BGR ! appsink'")
        w, h = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        limit = pixel_limit(max_pixels)
        if w * h > limit:
            self.capture.release()
            raise SourceError(f"the pipeline gives {w}×{h} = {w * h:,} pixels a frame, over the limit of {limit:,}",
                              "scale it down in the pipeline, or raise --max-pixels")
        fps = float(self.capture.get(cv2.CAP_PROP_FPS))
        self.fps = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)

    def frames(self) -> Iterator[np.ndarray]:
        n = 0
        while True:
            ok, bgr = self.capture.read()
            if not ok:
                break
            n += 1
            yield np.ascontiguousarray(bgr[..., ::-1])
        if n == 0:
            raise SourceError(f"the pipeline '{self.name}' gave no frames", "test it with gst-launch-1.0")

    def close(self) -> None:
        self.capture.release()


def open_source(source: str | Path | Source, max_pixels: int | None = None, timeout: float = 10.0,
                live: bool | None = None) -> Source:
    """A ``Source`` for SOURCE (see ``source_kind``); a ``Source`` object is returned as it is."""
    from edgeseg.data.folder import IMAGE_SUFFIXES

    if isinstance(source, Source):
        return source
    kind = source_kind(str(source))
    if kind == "gstreamer":
        return GStreamerSource(str(source), max_pixels, live)
    if kind == "folder":
        paths = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(paths, str(source), max_pixels)
    if kind in ("image", "video") and not Path(source).is_file():
        raise SourceError(f"not found: {source}", "pass an image, a folder, a video file, a URL or /dev/videoN")
    if kind == "image":
        return ImageSource([Path(source)], str(source), max_pixels)
    return VideoSource(str(source), kind, max_pixels, timeout, live)


# ---------------------------------------------------------------- sinks

def video_format(path: str | Path) -> str:
    """The container format for an output video's name, refusing a name FFmpeg would not know how to write."""
    fmt = VIDEO_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise EdgeSegError(f"cannot write a video as '{Path(path).name}'",
                           f"name the output *{', *'.join(sorted(VIDEO_FORMATS))}")
    return fmt


class VideoWriter:
    """An H.264 video (MPEG-4 Part 2 where FFmpeg has no libx264) at the source's frame rate, written under a
    temporary name beside ``path`` and renamed when ``close()`` has finalised it. Frame ``index`` (the source's
    count, dropped frames included) is its timestamp, so a live stream with drops plays at its real speed.
    Odd sizes are padded by one edge row/column (yuv420p needs even ones)."""

    def __init__(self, path: str | Path, fps: Fraction):
        from edgeseg.io import check_writable_folder

        self.path, self.fps = Path(path), Fraction(fps)
        self.format = video_format(self.path)
        check_writable_folder(self.path)
        self.frames = 0
        self._container: Any = None
        self._stack = contextlib.ExitStack()

    def write(self, picture: np.ndarray, index: int) -> None:
        import av

        h, w = picture.shape[:2]
        if h % 2 or w % 2:
            picture = np.pad(picture, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._container is None:
            from edgeseg.io import atomic_path

            self._staged = self._stack.enter_context(atomic_path(self.path))
            self._container = av.open(str(self._staged), "w", format=self.format)
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self._stream = self._container.add_stream(codec, rate=self.fps)
            self._stream.height, self._stream.width = picture.shape[:2]
            self._stream.pix_fmt = "yuv420p"
            self._stream.codec_context.time_base = 1 / self.fps
            if codec == "libx264":
                self._stream.options = {"preset": "veryfast"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
        frame.pts, frame.time_base = index, 1 / self.fps
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Flush the encoder, write the trailer and rename (``keep``), or delete the temporary file."""
        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            if keep:
                for packet in self._stream.encode(None):
                    container.mux(packet)
            container.close()
        except BaseException:
            keep = False
            raise
        finally:
            if not keep:
                self._staged.unlink(missing_ok=True)  # atomic_path then has nothing to rename
            self._stack.close()


def coco_detections(found: dict, image_id, class_names: list[str]) -> list[dict]:
    """One image's detections (boxes, scores, labels, masks R×H×W probabilities) as COCO results: box xywh and the
    mask (≥ 0.5) run-length encoded."""
    from pycocotools import mask as rle

    results = []
    for box, score, label, mask in zip(found["boxes"], found["scores"], found["labels"], found["masks"]):
        code = rle.encode(np.asfortranarray((mask >= 0.5).astype(np.uint8)))
        x1, y1, x2, y2 = (float(v) for v in box)
        results.append({"image_id": image_id, "category_id": int(label), "category": class_names[int(label)]
                        if 0 <= label < len(class_names) else str(int(label)), "score": float(score),
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "segmentation": {"size": code["size"], "counts": code["counts"].decode()}})
    return results


def label_picture(result: dict, task: str) -> np.ndarray:
    """What a frame's label PNG holds: semantic class ids, instance ids (0 none), panoptic ids in COCO panoptic's
    RGB encoding (id = R + 256·G + 256²·B)."""
    if task == "panoptic":
        ids = result["panoptic"].astype(np.int64)
        return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    ids = result["labels"] if task == "semantic" else result["instance_map"]
    return ids if ids.dtype == np.uint8 else ids.astype(np.uint16)


# ---------------------------------------------------------------- the pipeline

@dataclass
class _Item:
    index: int  # the source's frame count (dropped frames included)
    frame: np.ndarray
    t_in: float
    result: dict = field(default_factory=dict)  # predict's decisions (the infer stage)
    picture: Any = None  # the overlay, H×W×3 uint8 (the draw stage)
    ms: dict = field(default_factory=dict)


class Newest:
    """The live sources' hand-over: ``put`` never waits and replaces a frame not yet taken (counted in
    ``dropped``); ``get`` takes the newest; after the end, every ``get`` returns the end."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._ended = False
        self.dropped = 0

    def put(self, item, timeout: float | None = None) -> None:
        with self._cond:
            if item is _END:
                self._ended = True
            else:
                self.dropped += self._item is not None
                self._item = item
            self._cond.notify_all()

    def get(self, timeout: float | None = None):
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._ended, timeout):
                raise queue.Empty
            item, self._item = self._item, None
            return _END if item is None else item


class _Submitting:
    """A session view whose ``run`` goes through the session's asynchronous ``submit`` and waits for its own
    result: two workers calling it keep two runs in flight."""

    def __init__(self, session) -> None:
        self.session, self.meta = session, session.meta

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.session.submit(batch).result()


def model_frame(frame: np.ndarray, meta) -> np.ndarray:
    """An RGB uint8 frame as the model takes it: grey (Pillow's ITU-R 601 weights) for one channel, BGR for a deploy
    graph that says so."""
    if meta.in_channels == 1:
        rgb = frame.astype(np.uint32)
        return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)[..., None]
    if meta.in_channels != 3:
        raise EdgeSegError(f"model '{meta.model}' takes {meta.in_channels} channels; video frames have 3",
                           "stream with a 1- or 3-channel model")
    return frame[..., ::-1] if meta.io == "frames" and meta.frame_order == "BGR" else frame


def _guess_backend(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".pt": "torch", ".pth": "torch", ".engine": "tensorrt", ".plan": "tensorrt", ".trt": "tensorrt"}.get(
        suffix, "onnxruntime")


class Stream:
    """``for frame, result in Stream(model, source, ...)``: each processed frame (H×W×3 uint8 RGB, as decoded) with
    its decisions (``prepost.predict``'s dict). See the module's docstring; arguments as ``edgeseg.stream``."""

    def __init__(self, model, source, *, backend: str | None = None, out: str | Path | None = None,
                 labels_dir: str | Path | None = None, coco_json: str | Path | None = None,
                 summary_json: str | Path | None = None, max_pixels: int | None = None, timeout: float = 10.0,
                 live: bool | None = None, max_frames: int | None = None, queue_size: int = 4):
        from edgeseg.io import check_writable_folder

        if max_frames is not None and max_frames < 1:
            raise EdgeSegError(f"max_frames must be at least 1, got {max_frames}", "pass e.g. --max-frames 100")
        for path in (labels_dir and Path(labels_dir) / "x.png", coco_json, summary_json):
            if path:
                check_writable_folder(path)
        if out is not None:
            video_format(out)
            check_writable_folder(out)
        self.source = open_source(source, max_pixels, timeout, live)
        try:
            if isinstance(model, (str, Path)):
                from edgeseg.runtime import open_session

                model = open_session(model, backend or _guess_backend(Path(model)))
            self.session, self.meta = model, model.meta
            if coco_json and self.meta.task != "instance":
                raise EdgeSegError(f"COCO JSON is written for instance models; '{self.meta.model}' is {self.meta.task}",
                                   "drop --coco-json (use --labels-dir for label PNGs)")
            model_frame(np.zeros((1, 1, 3), np.uint8), self.meta)  # refuses a model a video cannot feed, now
        except BaseException:
            self.source.close()
            raise
        self.video = VideoWriter(out, self.source.fps) if out is not None else None
        self.labels_dir = Path(labels_dir) if labels_dir else None
        self.coco_json, self.summary_json = coco_json, summary_json
        self.coco: list[dict] = []
        self.max_frames, self.queue_size, self.max_pixels = max_frames, queue_size, max_pixels
        self.error: BaseException | None = None
        self.summary: dict = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = self._closed = False
        self._size: tuple[int, int] | None = None
        self._latency: list[float] = []
        self._ms: dict[str, list[float]] = {}

    # -- stages

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self._stop.set()

    def _put(self, q, item) -> bool:
        """Put, waiting for room unless the stream is being stopped."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self._stop.is_set():
                    return False

    def _check_size(self, frame: np.ndarray, index: int) -> None:
        """The first frame fixes the stream's size; a later frame of another size stops the stream. Rescaling it
        instead would change what the model sees and put that frame's labels, boxes and overlay in other pixels than
        the rest of the run's: the labels would no longer be the frame's own. So the run stops at the change, keeps
        everything before it, and says which frame changed to what."""
        size = frame.shape[:2]
        if self._size is None:
            from edgeseg.data.folder import pixel_limit

            limit = pixel_limit(self.max_pixels)
            if size[0] * size[1] > limit:
                raise SourceError(f"{self.source.name}: frames are {size[1]}×{size[0]}, over the limit of {limit:,} "
                                  "pixels", "downscale the source, or raise the limit with --max-pixels")
            self._size = size
        elif size != self._size:
            raise SourceError(f"{self.source.name} changes resolution at frame {index}: {self._size[1]}×{self._size[0]} "
                              f"-> {size[1]}×{size[0]}; stopped there (the frames before it are written)",
                              "split or rescale the video to one size first (e.g. ffmpeg -i IN -vf scale=W:H OUT.mp4)")

    def _decode(self, q) -> None:
        """Read the source; a source's own error is kept to be raised once the frames before it are through."""
        try:
            frames = iter(self.source.frames())
            t = time.perf_counter()
            for index, frame in enumerate(frames):
                if self._stop.is_set():
                    break
                t_in = time.perf_counter()
                self._check_size(frame, index)
                if not self._put(q, _Item(index, frame, t_in, ms={"decode": 1000 * (t_in - t)})):
                    break
                if self.max_frames is not None and index + 1 >= self.max_frames:
                    break
                t = time.perf_counter()
            getattr(frames, "close", lambda: None)()
        except EdgeSegError as e:
            with self._lock:
                self.error = self.error or e
        except BaseException as e:
            self._fail(e)
        finally:
            self._put(q, _END)

    def _stage(self, name: str, fn, q_in, q_out, workers: int, on_exit=None) -> None:
        """Start ``workers`` threads applying ``fn`` to items from ``q_in``; items leave in the order they were taken.
        The last worker out passes the end on and calls ``on_exit(failed)``."""
        state = {"taken": 0, "emitted": 0, "left": workers}
        order = threading.Condition()

        def work() -> None:
            failed = False
            try:
                while not self._stop.is_set():
                    with order:
                        try:
                            item = q_in.get(timeout=0.1)
                        except queue.Empty:
                            continue
                        if item is _END:
                            if workers > 1:
                                q_in.put(_END)  # for the sibling worker
                            break
                        seq, state["taken"] = state["taken"], state["taken"] + 1
                    t = time.perf_counter()
                    fn(item)
                    item.ms[name] = 1000 * (time.perf_counter() - t)
                    with order:
                        while state["emitted"] != seq and not self._stop.is_set():
                            order.wait(0.1)
                        if not self._put(q_out, item):
                            break
                        state["emitted"] += 1
                        order.notify_all()
            except BaseException as e:
                failed = True
                self._fail(e)
            finally:
                with order:
                    state["left"] -= 1
                    last = state["left"] == 0
                if last:
                    try:
                        if on_exit is not None:
                            on_exit(failed)
                    except BaseException as e:
                        self._fail(e)
                    finally:
                        self._put(q_out, _END)

        for k in range(workers):
            thread = threading.Thread(target=work, name=f"edgeseg-{name}-{k}", daemon=name != "write")
            self._threads.append(thread)
            thread.start()

    def _infer(self, item: _Item) -> None:
        item.result = predict_frame(self._runner, item.frame, masks=self.coco_json is not None)

    def _draw(self, item: _Item) -> None:
        item.picture = draw(item.frame, item.result, self.meta)

    def _write(self, item: _Item) -> None:
        if self.video is not None:
            self.video.write(item.picture, item.index)
        if self.labels_dir is not None:
            from edgeseg.viz import save_png

            save_png(self.labels_dir / f"{item.index:06d}.png", label_picture(item.result, self.meta.task))
        if self.coco_json is not None:
            self.coco += coco_detections(item.result, item.index, self.meta.class_names)
        item.result.pop("masks", None)  # R×H×W probabilities: needed for COCO only

    def _close_sinks(self, failed: bool) -> None:
        """Finalise what was written so far (a failed writer's video is deleted, never renamed into place)."""
        try:
            if self.video is not None:
                self.video.close(keep=not failed)
        finally:
            if self.coco_json is not None and not failed:
                from edgeseg.io import write_text_atomic

                write_text_atomic(self.coco_json, json.dumps(self.coco))

    def _start(self) -> None:
        if self._started:
            raise EdgeSegError("a stream can be iterated once", "call edgeseg.stream(...) again")
        self._started = True
        self._t0 = time.perf_counter()
        submit = callable(getattr(self.session, "submit", None))
        self._runner = _Submitting(self.session) if submit else self.session
        self._handover: Newest | queue.Queue = Newest() if self.source.live else queue.Queue(self.queue_size)
        decode = threading.Thread(target=self._decode, args=(self._handover,), name="edgeseg-decode", daemon=True)
        self._threads.append(decode)
        q = self._handover
        stages: list[tuple[str, Any, int, Any]] = [("infer", self._infer, 2 if submit else 1, None)]
        if self.video is not None:
            stages.append(("draw", self._draw, 1, None))
        if self.video is not None or self.labels_dir is not None or self.coco_json is not None:
            stages.append(("write", self._write, 1, self._close_sinks))
        for name, fn, workers, on_exit in stages:
            q_next: queue.Queue = queue.Queue(self.queue_size)
            self._stage(name, fn, q, q_next, workers, on_exit)
            q = q_next
        self._out = q
        decode.start()

    # -- the caller's side

    def __iter__(self) -> Iterator[tuple[np.ndarray, dict]]:
        self._start()
        try:
            while True:
                try:
                    item = self._out.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    continue
                if item is _END:
                    break
                self._record(item)
                yield item.frame, item.result
        finally:
            self.close()
        if self.error is not None:
            raise self.error

    def _record(self, item: _Item) -> None:
        self._latency.append(1000 * (time.perf_counter() - item.t_in))
        for name, ms in item.ms.items():
            self._ms.setdefault(name, []).append(ms)

    def close(self) -> None:
        """Stop the stages, finalise the sinks (what was written so far is kept) and write the summary."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        decode = [t for t in self._threads if t.name == "edgeseg-decode"]
        for thread in self._threads:
            if thread not in decode:
                thread.join()
        for thread in decode:
            thread.join(timeout=1.0)  # a live read may block until its timeout: the thread is a daemon
        if not any(t.is_alive() for t in decode):
            self.source.close()
        while self._started:  # frames written but not yet taken by the caller are in the summary too
            try:
                item = self._out.get_nowait()
            except queue.Empty:
                break
            if item is not _END:
                self._record(item)
        if self._started:
            self.summary = self._summarise()
            if self.summary_json:
                from edgeseg.io import write_text_atomic

                write_text_atomic(self.summary_json, json.dumps(self.summary, indent=2) + "\n")
        else:
            self.source.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _summarise(self) -> dict:
        wall = time.perf_counter() - self._t0
        frames = len(self._latency)
        lat = np.asarray(self._latency or [float("nan")])
        stop = "end" if self.error is None else f"{type(self.error).__name__}: {self.error}"
        return {"source": self.source.name, "live": self.source.live, "source_fps": float(self.source.fps),
                "size": list(self._size) if self._size else None, "frames": frames,
                "dropped": getattr(self._handover, "dropped", 0), "fps": frames / wall if wall > 0 else 0.0,
                "wall_s": wall, "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))},
                "stage_ms": {k: float(np.mean(v)) for k, v in self._ms.items()},
                "outputs": {"video": str(self.video.path) if self.video else None,
                            "labels_dir": str(self.labels_dir) if self.labels_dir else None,
                            "coco_json": str(self.coco_json) if self.coco_json else None},
                "stopped": stop}

    def summary_text(self) -> str:
        s = self.summary
        if not s:
            return ""
        stages = ", ".join(f"{k} {v:.1f}" for k, v in s["stage_ms"].items())
        return (f"{s['source']}: {s['frames']} frames ({s['dropped']} dropped) in {s['wall_s']:.1f} s, {s['fps']:.1f} FPS; "
                f"latency p50 {s['latency_ms']['p50']:.0f} ms, p99 {s['latency_ms']['p99']:.0f} ms; "
                f"ms per frame: {stages or '-'}")


def predict_frame(session, frame: np.ndarray, masks: bool = False) -> dict:
    """``prepost.predict`` on an RGB uint8 frame converted to what the model takes (``model_frame``)."""
    from edgeseg.runtime.prepost import predict

    return predict(session, model_frame(frame, session.meta), masks=masks)


def draw(frame: np.ndarray, result: dict, meta) -> np.ndarray:
    """The overlay of one frame's decisions (H×W×3 uint8): class colours, instances with boxes and names, or a
    colour per panoptic segment."""
    from edgeseg.runtime.prepost import from_frame
    from edgeseg.viz import draw_instances, overlay

    image = from_frame(frame)
    if meta.task == "semantic":
        return overlay(image, result["labels"], meta.num_classes)
    if meta.task == "instance":
        return draw_instances(image, result, meta.class_names)
    ids = result["panoptic"]
    return overlay(image, ids, int(ids.max()) + 1)


def stream(model, source, **options) -> Stream:
    """See ``edgeseg.stream``."""
    return Stream(model, source, **options)
