"""How much of a patch the structure fills: hippocampus (both classes) in the first 20 whole
Hippocampus volumes (a volume is about one 32 x 48 x 32 patch), the atrium in a 112 x 112 x 80
patch centred on it in the first 10 LA cases. Usage: python foreground_fraction.py HIPPO LA"""
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

hippo, la = Path(sys.argv[1]), Path(sys.argv[2])
labels = sorted((hippo / "labelsTr").glob("*.nii.gz"))[:20]
print(f"hippocampus: {np.mean([(np.asarray(nib.load(f).dataobj) > 0).mean() for f in labels]):.4f} "
      f"of a volume ({len(labels)} cases)")
fractions = []
for case in sorted(la.glob("*/mri_norm2.h5"))[:10]:
    with h5py.File(case) as h5:
        atrium = h5["label"][:] > 0
    centre = np.argwhere(atrium).mean(0).astype(int)
    window = tuple(slice(max(c - s // 2, 0), max(c - s // 2, 0) + s) for c, s in zip(centre, (112, 112, 80)))
    fractions.append(atrium[window].mean())
print(f"atrium: {np.mean(fractions):.4f} of a centred 112 x 112 x 80 patch ({len(fractions)} cases)")
