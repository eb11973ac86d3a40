"""GTSRB (German Traffic Sign Recognition Benchmark), the official ppm + GT csv release.

Layout (as unpacked from GTSRB_Final_Training_Images.zip, GTSRB_Final_Test_Images.zip and
GTSRB_Final_Test_GT.zip)::

    GTSRB/Final_Training/Images/000NN/*.ppm + GT-000NN.csv
    GTSRB/Final_Test/Images/*.ppm
    GT-final_test.csv   (next to GTSRB/, in GTSRB/, Final_Test/ or Final_Test/Images/)

The csv files are semicolon-separated with the columns
``Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId``.  Every image is cropped to its
ROI (``[Roi.Y1:Roi.Y2, Roi.X1:Roi.X2]``, the Pillow ``crop`` box convention, clipped to the
image) and then resized to ``image_size`` × ``image_size`` (default 32).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from classaware.data.bundle import RawData
from classaware.data.images import read_image, resize
from classaware.errors import ConfigError

__all__ = ["GTSRB_CLASSES", "find_gtsrb_dir", "load_gtsrb"]

GTSRB_CLASSES = [
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)",
    "Speed limit (60km/h)", "Speed limit (70km/h)", "Speed limit (80km/h)",
    "End of speed limit (80km/h)", "Speed limit (100km/h)", "Speed limit (120km/h)",
    "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop", "No vehicles",
    "Vehicles over 3.5 metric tons prohibited", "No entry", "General caution",
    "Dangerous curve to the left", "Dangerous curve to the right", "Double curve",
    "Bumpy road", "Slippery road", "Road narrows on the right", "Road work",
    "Traffic signals", "Pedestrians", "Children crossing", "Bicycles crossing",
    "Beware of ice/snow", "Wild animals crossing", "End of all speed and passing limits",
    "Turn right ahead", "Turn left ahead", "Ahead only", "Go straight or right",
    "Go straight or left", "Keep right", "Keep left", "Roundabout mandatory",
    "End of no passing", "End of no passing by vehicles over 3.5 metric tons",
]
_TEST_GT = "GT-final_test.csv"


def find_gtsrb_dir(base: Path) -> Path | None:
    """``base/GTSRB`` or ``base`` if it holds ``Final_Training/Images``."""
    for d in (base / "GTSRB", base):
        if (d / "Final_Training" / "Images").is_dir():
            return d
    return None


def _test_gt(d: Path) -> Path | None:
    for p in (d / "Final_Test" / "Images" / _TEST_GT, d / "Final_Test" / _TEST_GT,
              d / _TEST_GT, d.parent / _TEST_GT):
        if p.is_file():
            return p
    return None


def _read_gt(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    if rows and ("Filename" not in rows[0] or "ClassId" not in rows[0]):
        raise ConfigError(f"{csv_path}: expected ';'-separated columns Filename;...;ClassId, "
                          f"got {list(rows[0])}")
    return rows


def _crop(img: np.ndarray, row: dict[str, str], where: Path) -> np.ndarray:
    try:
        x1, y1, x2, y2 = (int(row[k]) for k in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
    except KeyError:
        return img
    except ValueError as exc:
        raise ConfigError(f"{where}: bad ROI in row {row}") from exc
    h, w = img.shape[:2]
    x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w))
    y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h))
    if x2 <= x1 or y2 <= y1:
        return img
    return img[y1:y2, x1:x2]


def _load_rows(folder: Path, rows: list[dict[str, str]], size: int,
               where: Path) -> tuple[np.ndarray, np.ndarray]:
    xs = np.empty((len(rows), 3, size, size), dtype=np.uint8)
    ys = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        path = folder / row["Filename"]
        if not path.is_file():
            raise ConfigError(f"{where}: lists {row['Filename']}, which is not in {folder}")
        img, _ = read_image(path)
        xs[i] = resize(_crop(img, row, where), size).transpose(2, 0, 1)
        try:
            ys[i] = int(row["ClassId"])
        except ValueError as exc:
            raise ConfigError(f"{where}: bad ClassId {row['ClassId']!r}") from exc
    return xs, ys


def load_gtsrb(d: Path, image_size: int = 32) -> RawData:
    """Read the GTSRB training and test sets from ``d`` (the folder holding Final_Training).

    Class names are the 43 official sign names (the first ``max label + 1`` of them).
    """
    train_root = d / "Final_Training" / "Images"
    xs, ys = [], []
    for cls_dir in sorted(p for p in train_root.iterdir() if p.is_dir()):
        gt = cls_dir / f"GT-{cls_dir.name}.csv"
        if gt.is_file():
            rows = _read_gt(gt)
        else:  # no GT file: every ppm of the folder, label from the folder name, no ROI
            if not cls_dir.name.isdigit():
                continue
            rows = [{"Filename": p.name, "ClassId": str(int(cls_dir.name))}
                    for p in sorted(cls_dir.glob("*.ppm"))]
        x, y = _load_rows(cls_dir, rows, image_size, gt)
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ConfigError(f"{train_root}: no class folders 000NN with images")
    gt_test = _test_gt(d)
    test_images = d / "Final_Test" / "Images"
    if gt_test is None or not test_images.is_dir():
        raise ConfigError(f"GTSRB test set not found under {d}: need Final_Test/Images "
                          f"(GTSRB_Final_Test_Images.zip) and {_TEST_GT} "
                          "(GTSRB_Final_Test_GT.zip), or set data.download = true")
    x_te, y_te = _load_rows(test_images, _read_gt(gt_test), image_size, gt_test)
    x_tr, y_tr = np.concatenate(xs), np.concatenate(ys)
    num = int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1
    if num > len(GTSRB_CLASSES) or min(y_tr.min(initial=0), y_te.min(initial=0)) < 0:
        raise ConfigError(f"{d}: GTSRB ClassId out of range 0..{len(GTSRB_CLASSES) - 1}")
    return RawData(x_tr, y_tr, x_te, y_te, GTSRB_CLASSES[:num], "image", str(d))
