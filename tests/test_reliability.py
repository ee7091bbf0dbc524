"""Bad input and failures a user can cause: one ``error:`` line naming the file (or flag) and
exit status 2, never a traceback, and never a run that looks successful but produced nothing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import cli_error, write_image
from srcrn.data.images import MAX_ASPECT_RATIO, MIN_SIDE, decode_image
from srcrn.errors import DataError


@pytest.mark.parametrize(
    ("size", "problem"),
    [((1, 1), "too small"), ((MIN_SIDE - 1, 400), "too small"), ((2000, 50), "too elongated")],
)
def test_images_of_absurd_shape_are_refused_naming_the_file(tmp_path, size, problem):
    path = write_image(tmp_path / "odd.png", size=size)
    with pytest.raises(DataError, match=problem) as refused:
        decode_image(path, 64)
    assert str(refused.value).startswith(str(path))


def test_the_limits_admit_every_dermoscopic_shape(tmp_path):
    for size in ((MIN_SIDE, MIN_SIDE), (int(MIN_SIDE * MAX_ASPECT_RATIO), MIN_SIDE), (1024, 767)):
        assert decode_image(write_image(tmp_path / "ok.png", size=size), 32)[0].shape == (32, 32, 3)


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path, sample, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    message = cli_error(capsys, "prepare", str(sample), "--out", str(blocker), "--size", "32")
    assert message.startswith(f"error: {blocker}") and "File exists" in message
    assert "Traceback" not in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path, sample):
    from srcrn.cli import main

    blocker = tmp_path / "taken"
    blocker.write_text("")
    with pytest.raises(FileExistsError):
        main(["prepare", str(sample), "--out", str(blocker), "--size", "32", "--debug"])


@pytest.mark.slow
def test_predict_that_predicts_nothing_fails(tmp_path, tiny_segmenter, tiny_classifier, capsys):
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
    strip = write_image(tmp_path / "strip.png", size=(20000, 50))
    models = ["--segmenter", tiny_segmenter, "--classifier", tiny_classifier, "--no-progress"]
    message = cli_error(capsys, "predict", str(tiny), str(strip), "--out", str(tmp_path / "out"), *models)
    assert "nothing predicted: 2 input(s) refused" in message and str(tiny) in message
    (tmp_path / "empty").mkdir()
    message = cli_error(capsys, "predict", str(tmp_path / "empty"), "--out", str(tmp_path / "out2"), *models)
    assert "nothing predicted: no image files found" in message
