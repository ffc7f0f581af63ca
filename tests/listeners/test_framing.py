"""LineFramer with plain bytes: however TCP cuts the stream, the same frames come out."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listeners import FrameTooLarge, LineFramer


def frames_of(chunks: list[bytes], framer: LineFramer) -> list[bytes]:
    buffer = bytearray()
    out: list[bytes] = []
    for chunk in chunks:
        buffer += chunk
        while (frame := framer.next_frame(buffer)) is not None:
            out.append(frame)
    return out


lines = st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"")).filter(lambda b: b.strip()),
                 max_size=20)


@given(lines, st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=50))
def test_any_chunking_gives_the_same_lines(frames: list[bytes], cuts: list[int]) -> None:
    data = b"".join(frame + b"\n" for frame in frames)
    chunks, at = [], 0
    for cut in cuts:
        chunks.append(data[at:at + cut])
        at += cut
    chunks.append(data[at:])
    assert frames_of(chunks, LineFramer(100)) == frames


def test_blank_lines_are_skipped_and_crlf_stripped_when_asked() -> None:
    assert frames_of([b"\n\r\n  \na\r\n\nb\n"], LineFramer(100, strip_cr=True)) == [b"a", b"b"]
    assert frames_of([b"a\r\n\n"], LineFramer(100, skip_blank=False)) == [b"a\r", b""]


def test_a_line_over_the_limit_raises_as_soon_as_the_limit_is_passed() -> None:
    framer = LineFramer(10)
    buffer = bytearray(b"x" * 10)
    assert framer.next_frame(buffer) is None  # exactly the limit, no newline yet: wait
    buffer += b"x"
    with pytest.raises(FrameTooLarge):
        framer.next_frame(buffer)
    with pytest.raises(FrameTooLarge):
        LineFramer(10).next_frame(bytearray(b"y" * 11 + b"\n"))
    assert LineFramer(10).next_frame(bytearray(b"y" * 10 + b"\n")) == b"y" * 10


def test_in_frame_says_whether_a_request_has_begun() -> None:
    framer = LineFramer(100)
    assert not framer.in_frame(bytearray())
    assert not framer.in_frame(bytearray(b" \r\n "))
    assert framer.in_frame(bytearray(b"ab"))
