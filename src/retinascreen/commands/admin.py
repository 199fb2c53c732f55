"""``retinascreen admin create USER`` (an administrator), ``admin invite`` (a single-use
registration link for ``REGISTRATION=invite``) and the account lifecycle: ``admin disable``,
``admin enable`` and ``admin delete``."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

EPILOG = """examples:
  retinascreen admin create alice                        # prompts for the password twice
  echo "$PASSWORD" | retinascreen admin create alice --password-stdin
  retinascreen admin create alice --database-url postgresql://user:pw@db/retinascreen
  retinascreen admin invite --url https://screening.example.org   # link valid 7 days, once
  retinascreen admin disable alice         # sessions end, tokens revoked, no sign-in until enable
  retinascreen admin enable alice
  retinascreen admin role nurse clinic --site north   # a clinic user who sees site north's visits
  retinascreen admin role grace grader                # a grader: the review queue
  retinascreen admin delete bob            # refused while bob has screenings, unless:
  retinascreen admin delete bob --screenings delete   # ... they and their photos go too
  retinascreen admin delete bob --screenings keep     # ... they stay; the account is closed for good
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "admin",
        help="manage web accounts (create, invite, disable, enable, delete)",
        description="Manage accounts of the web application in its database.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create an administrator account",
        description="Create an administrator. The password is prompted for (hidden) unless "
        "--password-stdin reads it from the first line of standard input.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("username", metavar="USER")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    create.add_argument(
        "--database-url", metavar="URL", help="SQLAlchemy URL (default: $DATABASE_URL or SQLite)"
    )
    create.add_argument(
        "--instance", type=Path, metavar="DIR", help="instance folder (default ./instance)"
    )
    invite = actions.add_parser(
        "invite",
        help="print a single-use registration invite link (REGISTRATION=invite)",
        description="Create a single-use invite and print its code and registration link. "
        "Only the code's hash is stored; it works once, for --days days.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    invite.add_argument("--days", type=int, default=7, help="days it stays valid (default 7)")
    invite.add_argument(
        "--url",
        metavar="URL",
        help="the server's public address (default $RETINASCREEN_PUBLIC_URL or "
        "http://127.0.0.1:5000)",
    )
    invite.add_argument(
        "--database-url", metavar="URL", help="SQLAlchemy URL (default: $DATABASE_URL or SQLite)"
    )
    invite.add_argument(
        "--instance", type=Path, metavar="DIR", help="instance folder (default ./instance)"
    )
    disable = actions.add_parser(
        "disable",
        help="disable an account: end its sessions, revoke its tokens, refuse its sign-ins",
        description="Disable an account at once: every session ends, every API token is "
        "revoked, and it cannot sign in or get a token until 'admin enable'. Screenings stay.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    enable = actions.add_parser(
        "enable",
        help="let a disabled account sign in again",
        description="Enable a disabled account (its old sessions and tokens stay ended).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    remove = actions.add_parser(
        "delete",
        help="delete an account (sessions and tokens end at once; the audit log keeps its name)",
        description="Delete an account: every session and API token ends at once; audit events "
        "keep the username. An account with screenings needs --screenings: 'delete' deletes "
        "them and their stored photos too; 'keep' keeps them under the account, which is then "
        "closed for good (no sign-in, cannot be enabled, its name is not reused).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    remove.add_argument(
        "--screenings",
        choices=("delete", "keep"),
        help="what happens to the account's screenings (required when it has any)",
    )
    role = actions.add_parser(
        "role",
        help="set an account's role (clinic, grader, admin) and clinic site",
        description="Set an account's role: 'clinic' uploads visits and sees its site's "
        "visits, 'grader' reviews the queue, 'admin' sees everything.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for lifecycle in (disable, enable, remove, role):
        lifecycle.add_argument("username", metavar="USER")
        lifecycle.add_argument(
            "--database-url",
            metavar="URL",
            help="SQLAlchemy URL (default: $DATABASE_URL or SQLite)",
        )
        lifecycle.add_argument(
            "--instance", type=Path, metavar="DIR", help="instance folder (default ./instance)"
        )
    role.add_argument("role", choices=("clinic", "grader", "admin"))
    role.add_argument("--site", help="the clinic site of a clinic user")
    parser.set_defaults(func=run)


def read_password(from_stdin: bool) -> str:
    """The new password from stdin or an interactive prompt (asked twice)."""
    from retinascreen.errors import ConfigError

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise ConfigError("the passwords differ")
    else:
        raise ConfigError("no terminal to ask for the password: use --password-stdin")
    return password


def run(args: argparse.Namespace) -> int:
    from retinascreen.web import accounts
    from retinascreen.web.accounts import create_admin, create_invite

    where = {"database_url": args.database_url, "instance": args.instance}
    if args.action == "disable":
        print(accounts.disable_user(args.username, **where))
        return 0
    if args.action == "role":
        print(accounts.set_role(args.username, args.role, site=args.site, **where))
        return 0
    if args.action == "enable":
        print(accounts.enable_user(args.username, **where))
        return 0
    if args.action == "delete":
        print(accounts.delete_user(args.username, screenings=args.screenings, **where))
        return 0

    if args.action == "invite":
        code = create_invite(days=args.days, database_url=args.database_url, instance=args.instance)
        base = args.url or os.environ.get("RETINASCREEN_PUBLIC_URL") or "http://127.0.0.1:5000"
        print(f"invite code {code} (single use, valid {args.days} days)")
        print(f"{base.rstrip('/')}/auth/register?invite={code}")
        return 0

    password = read_password(args.password_stdin)
    create_admin(args.username, password, database_url=args.database_url, instance=args.instance)
    print(f"created administrator {args.username!r}")
    return 0
