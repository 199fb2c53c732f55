"""``retinascreen pacs pull|push``: screen a PACS's fundus photographs and store the results back."""

from __future__ import annotations

import argparse
import os

from retinascreen.commands.watch import add_intake_arguments

EPILOG = """examples:
  make pacs                                      # a local Orthanc with DICOMweb; prints its URL
  retinascreen pacs pull --url http://127.0.0.1:8042/dicom-web --user screener
  retinascreen pacs push --url http://127.0.0.1:8042/dicom-web --user screener
$RETINASCREEN_PACS_URL is used when --url is left out.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pacs",
        help="screen a PACS's fundus photographs (DICOMweb) and store the results back",
        description=(
            "pull: find the PACS's fundus photographs (QIDO-RS), retrieve the new ones "
            "(WADO-RS) and screen them into the web app's database; photographs pulled before "
            "are never screened again. push: store each pulled study's results back (STOW-RS): "
            "a DICOM SR of the findings per eye, a DICOM Segmentation of each vessel map and "
            "the PDF report as Encapsulated PDF."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("pull", "push"), help="pull photos or push results")
    parser.add_argument("--url", metavar="URL", help="the PACS's DICOMweb root URL")
    parser.add_argument(
        "--modality",
        default="OP",
        help="only photographs of this modality (default OP; 'any' for all photo classes)",
    )
    parser.add_argument("--patient-id", metavar="ID", help="pull only this patient's photographs")
    add_intake_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retinascreen.errors import ConfigError
    from retinascreen.serving.pacs import Pacs
    from retinascreen.web.intake import ScreeningSink
    from retinascreen.web.pacs_sync import pull, push

    url = args.url or os.environ.get("RETINASCREEN_PACS_URL")
    if not url:
        raise ConfigError("give the PACS's DICOMweb URL with --url (or $RETINASCREEN_PACS_URL)")
    pacs = Pacs(url)
    sink = ScreeningSink(
        args.user, instance=args.instance, database_url=args.database_url, model=args.model
    )
    try:
        if args.action == "pull":
            modality = None if args.modality.lower() == "any" else args.modality
            done = pull(pacs, sink, modality=modality, patient_id=args.patient_id)
            print(
                f"{done.found} photograph(s) in the PACS: {len(done.screened)} screened, "
                f"{done.skipped} pulled before, {len(done.failed)} could not be screened"
            )
            for line in done.failed:
                print(f"  {line}")
        else:
            pushed = push(pacs, sink)
            print(f"stored {len(pushed.stored)} object(s) in {pushed.studies} study(ies)")
    finally:
        sink.close()
    return 0
