"""The eventsocket frame parser (bridge.sources.hubitat.eventsocket.FrameParser), without sockets.

Frames are hand-built JSON, usually one object per message, sometimes split across messages or garbage
(hubitat.md 2.2, 2.5). The capture in the fixtures is the shape of a real frame.
"""

from __future__ import annotations

import pytest

from bridge.sim.hubitat import fixture_text
from bridge.sources.hubitat.eventsocket import MAX_PENDING, FrameParser

FRAME = '{ "source":"DEVICE","name":"switch","displayName" : "Loft Fan", "value" : "on", "deviceId":176 }'


def names(parser: FrameParser, *messages: str) -> tuple[list[str], list[str]]:
    frames, problems = [], []
    for message in messages:
        parsed = parser.feed(message)
        frames += [f.obj.get("name", "?") for f in parsed.frames]
        problems += parsed.problems
    return frames, problems


def test_the_captured_frames_parse_one_object_each() -> None:
    """Every frame of the capture in the fixtures is one object with its own text."""
    parser = FrameParser()
    lines = [line for line in fixture_text("eventsocket_frames.txt").splitlines() if line.startswith("{")]
    assert lines
    for line in lines:
        parsed = parser.feed(line)
        assert [f.text for f in parsed.frames] == [line] and parsed.problems == []


@pytest.mark.parametrize("cut", range(1, len(FRAME)))
def test_a_frame_split_anywhere_is_joined_again(cut: int) -> None:
    """An object split across two messages at any character comes out whole, once."""
    assert names(FrameParser(), FRAME[:cut], FRAME[cut:]) == (["switch"], [])


def test_a_frame_split_in_three_is_joined_again() -> None:
    """helog's toleratesSplitJson case: one object in three messages."""
    assert names(FrameParser(), FRAME[:10], FRAME[10:40], FRAME[40:]) == (["switch"], [])


def test_a_lone_quote_never_swallows_the_next_frame() -> None:
    """A message that is only a quote is reported as garbage; the valid frame after it is not lost."""
    frames, problems = names(FrameParser(), '"', FRAME)
    assert frames == ["switch"] and problems == ['"']


def test_an_unfinished_object_followed_by_a_whole_frame_gives_the_frame() -> None:
    """Garbage that starts an object and never ends does not swallow a whole frame that follows it."""
    frames, problems = names(FrameParser(), '{"name":"x","value":', FRAME, FRAME.replace("switch", "level"))
    assert frames == ["switch", "level"] and len(problems) == 1


@pytest.mark.parametrize("deep", ["[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, "[" * 100_000])
def test_deep_nesting_is_a_problem_not_a_crash(deep: str) -> None:
    """JSON nested far beyond any hub's (1000 levels, or 100 000 unclosed) is reported, and the next frame parses."""
    frames, problems = names(FrameParser(), deep, FRAME)
    assert frames[-1:] == ["switch"] and problems


def test_garbage_between_objects_is_skipped() -> None:
    """A message with garbage between two objects yields both objects and reports the garbage once."""
    frames, problems = names(FrameParser(), FRAME + " 42 xx " + FRAME.replace("switch", "level"))
    assert frames == ["switch", "level"] and len(problems) == 1


def test_nothing_larger_than_the_limit_is_held_back() -> None:
    """An object still unfinished after MAX_PENDING characters is dropped, never held in memory."""
    parser = FrameParser()
    parsed = parser.feed('{"name":"big","value":"' + "x" * (MAX_PENDING + 10))
    assert parser.pending == 0 and parsed.problems
    assert names(parser, FRAME) == (["switch"], [])


def test_a_bare_nan_or_lone_surrogate_never_reaches_a_value() -> None:
    """NaN and Infinity become their text and a lone surrogate U+FFFD: nothing the journal cannot store."""
    parsed = FrameParser().feed('{"name":"t","value":NaN,"displayName":"\\ud83d","deviceId":-Infinity}')
    (frame,) = parsed.frames
    assert frame.obj == {"name": "t", "value": "NaN", "displayName": "\ufffd", "deviceId": "-Infinity"}
