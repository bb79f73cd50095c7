#!/usr/bin/env python3
"""Fetches the classify example's labels and demo photos from package registries:

- ImageNet-1k class names from the npm package `@tensorflow-models/mobilenet` 2.1.1
  (Apache-2.0, Google LLC), `dist/imagenet_classes.js`, written one name per line (index =
  line number) to examples/data/efficientnet_lite0/imagenet_labels.txt;
- photos from the PyPI wheel `scikit-image` 0.26.0, `skimage/data/`: chelsea.png (a cat,
  CC0, Stefan van der Walt), coffee.png (CC0, Rachel Michetti) and rocket.jpg (SpaceX,
  public domain), copied to examples/data/photos/; and five other images for static INT8
  calibration (see CALIBRATION below), copied to examples/data/calibration/.

Standard library only; `pip download` fetches the wheel, urllib the npm tarball (both
registries). Pass --npm-tgz / --skimage-wheel to use local copies instead.

    python3 tools/efficientnet_lite0/assets.py [--out examples/data]
"""

import argparse
import io
import os
import re
import sys
import tarfile
import urllib.request

from convert import read_from_wheel

NPM_URL = "https://registry.npmjs.org/@tensorflow-models/mobilenet/-/mobilenet-2.1.1.tgz"
SKIMAGE = "scikit-image==0.26.0"
PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg"]
# Calibration images for static INT8, none of them a photo the example classifies:
# astronaut.png and hubble_deep_field.jpg (NASA, public domain), retina.jpg (CC0,
# Mikael Haggstrom), camera.png (CC0, Lav Varshney), coins.png (Brooklyn Museum, no known
# copyright restrictions).
CALIBRATION = ["astronaut.png", "hubble_deep_field.jpg", "retina.jpg", "camera.png", "coins.png"]


def labels_from_js(text):
    """The 1000 names of `imagenet_classes.js` (`N: 'a' + 'b',` entries)."""
    names = {}
    lit = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
    for m in re.finditer(r"(\d+)\s*:\s*((?:(?:" + lit + r")\s*\+?\s*)+)", text):
        parts = re.findall(lit, m.group(2))
        names[int(m.group(1))] = "".join(
            re.sub(r"\\(.)", r"\1", p[1:-1]) for p in parts)
    if sorted(names) != list(range(1000)):
        sys.exit(f"imagenet_classes.js: found {len(names)} classes, expected 0..999")
    return [names[i] for i in range(1000)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="examples/data")
    ap.add_argument("--npm-tgz")
    ap.add_argument("--skimage-wheel")
    args = ap.parse_args()
    if args.npm_tgz:
        tgz = open(args.npm_tgz, "rb").read()
    else:
        with urllib.request.urlopen(NPM_URL) as r:
            tgz = r.read()
    with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
        js = t.extractfile("package/dist/imagenet_classes.js").read().decode()
    labels = labels_from_js(js)
    ldir = os.path.join(args.out, "efficientnet_lite0")
    os.makedirs(ldir, exist_ok=True)
    with open(os.path.join(ldir, "imagenet_labels.txt"), "w") as f:
        f.write("\n".join(labels) + "\n")
    files = read_from_wheel(SKIMAGE, ["skimage/data/" + n for n in PHOTOS + CALIBRATION],
                            args.skimage_wheel)
    for names, sub in ((PHOTOS, "photos"), (CALIBRATION, "calibration")):
        d = os.path.join(args.out, sub)
        os.makedirs(d, exist_ok=True)
        for name in names:
            with open(os.path.join(d, name), "wb") as f:
                f.write(files["skimage/data/" + name])
    print(f"{ldir}/imagenet_labels.txt: {len(labels)} classes; photos: {', '.join(PHOTOS)}; "
          f"calibration: {', '.join(CALIBRATION)}")


if __name__ == "__main__":
    main()
