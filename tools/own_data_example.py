"""Make an "own data" folder from an MSD dataset: a few labeled images, many unlabeled ones
(images without label files) and a folder of new scans to segment, the situation this
toolkit is for. The README's own-data commands run on it.

    python tools/own_data_example.py data/Hippocampus data/MyHippocampus --labeled 17 --unlabeled 151 --new 10

writes ``data/MyHippocampus/`` (dataset.json, imagesTr/ with the labeled and unlabeled images,
labelsTr/ with the labeled ones' labels only) and ``data/MyHippocampus_new/`` (images alone).
Cases are taken in the order of the source's ``dev_train.list`` (the training images) and
``dev_val.list`` (the new scans), else of its imagesTr/ folder; files are copied, never moved.
"""
import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataloaders.case_lists import read_case_list  # noqa: E402
from dataloaders.msd import DATASET_JSON, case_paths, list_case_ids  # noqa: E402
from utils.errors import UserError, report_user_errors  # noqa: E402


def source_cases(source: Path, list_name: str) -> list[str]:
    listed = source / list_name
    return read_case_list(listed) if listed.is_file() else list_case_ids(source)


@report_user_errors
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="an MSD folder with labels for every image (e.g. data/Hippocampus)")
    parser.add_argument("target", type=Path, help="the folder to write (must not exist)")
    parser.add_argument("--labeled", type=int, default=17, help="images copied with their labels")
    parser.add_argument("--unlabeled", type=int, default=151, help="images copied without labels")
    parser.add_argument("--new", type=int, default=10, help="images copied to <target>_new/ to be segmented")
    args = parser.parse_args()
    if not (args.source / DATASET_JSON).is_file():
        raise UserError(f"{args.source} has no {DATASET_JSON}: pass an MSD folder (python -m dataloaders.download "
                        "hippocampus fetches one)")
    new_folder = args.target.parent / f"{args.target.name}_new"
    for folder in (args.target, new_folder):
        if folder.exists():
            raise UserError(f"{folder} exists already; choose another target")
    training = source_cases(args.source, "dev_train.list")
    if args.labeled + args.unlabeled > len(training):
        raise UserError(f"--labeled {args.labeled} + --unlabeled {args.unlabeled} is more than the {len(training)} "
                        "training images of the source")
    new = [c for c in source_cases(args.source, "dev_val.list") if c not in set(training)][:args.new]
    (args.target / "imagesTr").mkdir(parents=True)
    (args.target / "labelsTr").mkdir()
    new_folder.mkdir()
    shutil.copy(args.source / DATASET_JSON, args.target / DATASET_JSON)
    for number, case in enumerate(training[:args.labeled + args.unlabeled]):
        image, label = case_paths(args.source, case)
        shutil.copy(image, args.target / "imagesTr" / image.name)
        if number < args.labeled:
            shutil.copy(label, args.target / "labelsTr" / label.name)
    for case in new:
        image, _ = case_paths(args.source, case)
        shutil.copy(image, new_folder / image.name)
    print(f"{args.target}: {args.labeled} labeled and {args.unlabeled} unlabeled images; {new_folder}: {len(new)} "
          "new scans")


if __name__ == "__main__":
    main()
