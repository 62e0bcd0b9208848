import json
import math

import numpy as np
import pytest

from glnet.errors import GLNetError
from glnet.metrics import ConfusionMatrix, format_table

# A 2x3 example with 3 classes, used by several tests.
#   target  0 0 1     pred  0 1 1
#           1 2 2           1 2 0
# (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0)
#   matrix (rows = gt):  [1 1 0]   tp      = [1 2 1]
#                        [0 2 0]   support = [2 2 2]  (row sums)
#                        [1 0 1]   predict = [2 3 1]  (column sums)
#   IoU  = tp / (support + predict - tp) = [1/3, 2/3, 1/2]
#   F1   = 2 tp / (support + predict)    = [1/2, 4/5, 2/3]
#   precision = tp / predict = [1/2, 2/3, 1];  recall = tp / support = [1/2, 1, 1/2]
#   pixel accuracy = 4/6;  mIoU = 1/2;  mIoU without class 0 = (2/3 + 1/2) / 2 = 7/12
TARGET = np.array([[0, 0, 1], [1, 2, 2]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 2, 0]], dtype=np.int64)


def test_hand_computed_matrix_and_scores():
    cm = ConfusionMatrix(3)
    cm.update(TARGET, PRED)
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert cm.matrix.dtype == np.int64

    s = cm.scores()
    np.testing.assert_allclose(s.iou, [1 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(s.f1, [1 / 2, 4 / 5, 2 / 3])
    np.testing.assert_allclose(s.precision, [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(s.recall, [1 / 2, 1, 1 / 2])
    np.testing.assert_array_equal(s.support, [2, 2, 2])
    assert s.pixel_accuracy == pytest.approx(4 / 6)
    assert s.mean_iou == pytest.approx(1 / 2)
    assert s.mean_f1 == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert s.excluded == ()


def test_exclude_class_zero_deepglobe_protocol():
    cm = ConfusionMatrix(3)
    cm.update(TARGET, PRED)
    s = cm.scores(exclude=(0,))
    assert s.mean_iou == pytest.approx(7 / 12)
    assert s.mean_f1 == pytest.approx((4 / 5 + 2 / 3) / 2)
    # Per-class values and pixel accuracy are unchanged by exclusion.
    assert s.iou[0] == pytest.approx(1 / 3)
    assert s.pixel_accuracy == pytest.approx(4 / 6)
    assert s.excluded == (0,)


def test_accumulating_images_equals_one_big_image():
    rng = np.random.default_rng(0)
    targets = [rng.integers(0, 5, size=(7, 9)) for _ in range(4)]
    preds = [rng.integers(0, 5, size=(7, 9)) for _ in range(4)]
    several = ConfusionMatrix(5)
    for t, p in zip(targets, preds):
        several.update(t, p)
    big = ConfusionMatrix(5)
    big.update(np.concatenate(targets), np.concatenate(preds))
    np.testing.assert_array_equal(several.matrix, big.matrix)
    assert several.matrix.sum() == 4 * 7 * 9
    assert several.scores().mean_iou == pytest.approx(big.scores().mean_iou)


def test_merge_and_reset():
    a, b, both = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(TARGET, PRED)
    b.update(PRED, TARGET)
    both.update(TARGET, PRED)
    both.update(PRED, TARGET)
    a.merge(b)
    np.testing.assert_array_equal(a.matrix, both.matrix)
    a.reset()
    assert a.matrix.sum() == 0
    with pytest.raises(GLNetError, match="merge"):
        a.merge(ConfusionMatrix(4))


def test_matrix_property_is_a_copy():
    cm = ConfusionMatrix(3)
    cm.update(TARGET, PRED)
    cm.matrix[:] = 99
    assert cm.matrix.sum() == 6


def test_ignore_index_and_out_of_range_targets_are_skipped():
    # 255 is ignored explicitly; 7 is outside 0..2 and skipped too.
    target = np.array([[0, 255, 1], [7, 2, 2]])
    pred = np.array([[0, 2, 1], [0, 2, 1]])
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(target, pred)
    # counted pairs: (0,0) (1,1) (2,2) (2,1)
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])


def test_ignore_index_inside_class_range():
    cm = ConfusionMatrix(3, ignore_index=0)
    cm.update(TARGET, PRED)
    # Rows for class 0 are dropped: (1,1) (1,1) (2,2) (2,0)
    np.testing.assert_array_equal(cm.matrix, [[0, 0, 0], [0, 2, 0], [1, 0, 1]])


def test_absent_class_is_nan_and_left_out_of_means():
    # Class 2 is in neither target nor prediction; class 3 only in the prediction.
    target = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 0, 1, 3]])
    cm = ConfusionMatrix(4)
    cm.update(target, pred)
    s = cm.scores()
    assert math.isnan(s.iou[2]) and math.isnan(s.f1[2])
    assert math.isnan(s.precision[2]) and math.isnan(s.recall[2])
    # IoU: class 0 = 2/2, class 1 = 1/2, class 3 = 0/1 (predicted, never true)
    np.testing.assert_allclose(s.iou[[0, 1, 3]], [1, 1 / 2, 0])
    assert s.recall[3] == 0 and s.precision[3] == 0
    assert s.mean_iou == pytest.approx((1 + 1 / 2 + 0) / 3)


def test_empty_matrix_gives_nan_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ConfusionMatrix(3).scores(exclude=(0,))
    assert math.isnan(s.mean_iou) and math.isnan(s.pixel_accuracy)
    assert np.isnan(s.iou).all()


def test_bad_inputs_raise_readable_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(GLNetError, match=r"shape \(2, 3\).*\(3, 2\)"):
        cm.update(TARGET, PRED.T)
    with pytest.raises(GLNetError, match="prediction holds class 3"):
        cm.update(TARGET, np.full((2, 3), 3))
    with pytest.raises(GLNetError, match="prediction holds class -1"):
        cm.update(TARGET, np.full((2, 3), -1))
    with pytest.raises(GLNetError, match="integer"):
        cm.update(TARGET, PRED.astype(float))
    with pytest.raises(GLNetError, match="exclude class 5"):
        cm.scores(exclude=(5,))
    with pytest.raises(GLNetError, match="positive integer"):
        ConfusionMatrix(0)
    assert cm.matrix.sum() == 0  # failed updates count nothing


def test_to_dict_is_json_friendly():
    cm = ConfusionMatrix(4)
    cm.update(TARGET, PRED)  # class 3 absent
    d = cm.scores(exclude=(0,)).to_dict(["a", "b", "c", "d"])
    text = json.dumps(d, allow_nan=False)  # NaN would make this fail
    back = json.loads(text)
    assert back["mean_iou"] == pytest.approx(7 / 12)
    assert back["excluded"] == [0]
    assert back["classes"][3] == {
        "id": 3,
        "name": "d",
        "iou": None,
        "f1": None,
        "precision": None,
        "recall": None,
        "support": 0,
    }
    assert back["classes"][1]["support"] == 2
    with pytest.raises(GLNetError, match="3 class names for 4 classes"):
        cm.scores().to_dict(["a", "b", "c"])


def test_format_table():
    cm = ConfusionMatrix(4)
    cm.update(TARGET, PRED)
    text = format_table(cm.scores(exclude=(0,)), ["unknown", "urban", "agriculture", "water"])
    lines = text.splitlines()
    assert len(lines) == 6
    assert lines[1].split()[:5] == ["0", "unknown", "0.3333", "0.5000", "2"]
    assert "(excluded)" in lines[1]
    assert lines[2].split() == ["1", "urban", "0.6667", "0.8000", "2"]
    assert lines[4].split() == ["3", "water", "-", "-", "0"]
    assert "mIoU 0.5833" in lines[5]
    # Columns line up: every row (header included) has the same width before any note.
    assert len({len(line.replace("  (excluded)", "")) for line in lines[:5]}) == 1
