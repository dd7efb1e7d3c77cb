from __future__ import annotations

import numpy as np
import pytest

from core import video
from core.video import VideoError, iter_windows, probe, read_window
from tests.conftest import index_frame, read_index


def indices_of(frames: np.ndarray) -> list[int]:
    return [read_index(f) for f in frames]


def test_index_code_survives_the_codec(index_video):
    assert probe(index_video).num_frames == 120
    assert read_index(index_frame(613)) == 613


@pytest.mark.parametrize("backend", ["decord", "opencv"])
@pytest.mark.parametrize("center", [50, 97, 3, 115])
def test_window_is_frame_exact(index_video, backend, center):
    frames = read_window(index_video, center, backend=backend)
    assert frames.shape == (16, 64, 96, 3) and frames.dtype == np.uint8
    expected = [min(max(i, 0), 119) for i in range(center - 7, center + 9)]
    assert indices_of(frames) == expected


def test_sequential_pass_matches_random_access(index_video):
    centers = [100, 10, 12, 60, 61, 118, 0]  # unordered, overlapping, at both ends
    got = dict(iter_windows(index_video, centers))
    assert list(got) == sorted(centers)
    for c in centers:
        assert indices_of(got[c]) == [min(max(i, 0), 119) for i in range(c - 7, c + 9)]
        np.testing.assert_array_equal(got[c], read_window(index_video, c, backend="opencv"))


def test_sequential_pass_keeps_only_pending_frames(index_video, monkeypatch):
    sizes = []
    real_stack = np.stack

    def spy(arrays, *a, **k):
        sizes.append(len(arrays))
        return real_stack(arrays, *a, **k)

    monkeypatch.setattr(video.np, "stack", spy)
    list(iter_windows(index_video, range(10, 110, 5)))
    assert sizes and max(sizes) == 16


def test_custom_window_sizes(index_video):
    frames = read_window(index_video, 40, before=2, after=1, backend="decord")
    assert indices_of(frames) == [38, 39, 40, 41]


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 50, b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 4000])
def test_bad_files_raise_a_clear_error(tmp_path, content):
    path = tmp_path / "match.mp4"
    path.write_bytes(content)
    for call in (lambda: read_window(path, 5), lambda: list(iter_windows(path, [5])), lambda: probe(path)):
        with pytest.raises(VideoError, match="match.mp4"):
            call()


def test_truncated_file_raises(index_video, tmp_path):
    path = tmp_path / "cut.mp4"
    path.write_bytes(index_video.read_bytes()[: index_video.stat().st_size // 3])
    with pytest.raises(VideoError):
        read_window(path, 100)


def test_missing_file_and_out_of_range(index_video, tmp_path):
    with pytest.raises(VideoError, match="no such video"):
        read_window(tmp_path / "nope.mp4", 3)
    with pytest.raises(VideoError, match="outside the video"):
        read_window(index_video, 500)
    with pytest.raises(VideoError, match="past the last frame"):
        list(iter_windows(index_video, [5, 500]))


def test_hanging_decord_is_killed_and_reported(index_video):
    pool = video._DecordPool(timeout_s=1.0, worker="tests.test_video:_sleeping_serve")
    with pytest.raises(VideoError, match="did not answer"):
        pool.read(str(index_video), [0, 1])
    assert pool._proc is None  # killed; a later read starts a fresh worker


def test_a_worker_that_dies_is_reported_and_replaced(index_video):
    pool = video._DecordPool(worker="tests.test_video:_crashing_serve")
    with pytest.raises(VideoError, match="stopped unexpectedly"):
        pool.read(str(index_video), [0, 1])
    pool.worker = "core.video:_decord_serve"
    assert indices_of(pool.read(str(index_video), [4, 5])) == [4, 5]
    pool.close()


def test_decord_worker_is_recycled(index_video):
    pool = video._DecordPool(recycle_after=2)
    pids = []
    for i in range(5):
        pool.read(str(index_video), [i])
        pids.append(pool._proc.pid)
    assert len(set(pids)) == 3  # a fresh worker every 2 reads bounds decord's leaks
    pool.close()


def _sleeping_serve(read_fd: int, write_fd: int) -> None:
    import time
    from multiprocessing.connection import Connection

    Connection(read_fd, writable=False).recv()
    time.sleep(60)


def _crashing_serve(read_fd: int, write_fd: int) -> None:
    import os

    os._exit(3)


def test_read_clip_returns_every_frame(tmp_path):
    from core.video import read_clip, write_video

    path = write_video(tmp_path / "clip.mp4", [index_frame(i) for i in range(16)], fps=30)
    assert indices_of(read_clip(path)) == list(range(16))


def test_media_for_the_browser_is_h264_with_the_frames_asked_for(index_video, tmp_path):
    """Browser copies, stroke clips and highlight reels are H.264 mp4 (every browser plays them),
    with every frame of what was asked for, in order, at an even size at most PREVIEW_MAX_WIDTH wide."""
    import av

    from core.video import PREVIEW_MAX_WIDTH, transcode, video_fps, write_highlights, write_segments

    def streams(path):
        with av.open(str(path)) as f:
            v = f.streams.video[0]
            frames = [read_index(fr.to_ndarray(format="rgb24")) for fr in f.decode(v)]
            return v.codec_context.name, v.width, v.height, frames

    fps = video_fps(index_video)
    copy = tmp_path / "copy.mp4"
    transcode(index_video, copy)
    codec, w, h, frames = streams(copy)
    assert codec == "h264" and w <= PREVIEW_MAX_WIDTH and w % 2 == 0 == h % 2 and frames == list(range(120))
    clip = tmp_path / "clip.mp4"
    write_segments(index_video, [(40 / fps, 49 / fps)], clip)
    assert streams(clip)[0] == "h264" and streams(clip)[3] == list(range(40, 50))
    reel = write_highlights([(index_video, 10 / fps, 14 / fps), (index_video, 100 / fps, 102 / fps)],
                            tmp_path / "reel.mp4")
    assert streams(reel)[0] == "h264" and streams(reel)[3] == [10, 11, 12, 13, 14, 100, 101, 102]
    with pytest.raises(VideoError, match="no frames"):
        write_segments(index_video, [(50.0, 51.0)], tmp_path / "empty.mp4")
    assert not (tmp_path / "empty.mp4").exists() and not (tmp_path / "empty.part.mp4").exists()
