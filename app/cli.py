"""The `tidings` command line: serve, user management and mail import.

Every command takes `--data DIR` (default: $TIDINGS_DATA, else ./data), before or after the command
name. Errors are one line on stderr and a non-zero exit status: 1 for a failed command, 2 for a
command line that does not parse, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import secrets
import sys
import textwrap
import time
from collections.abc import Sequence
from types import SimpleNamespace

DEFAULT_DATA = "./data"
ENGINES = ("tantivy", "whoosh")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMATS = ("text", "json")
METRICS_MODES = ("off", "local", "on")  # what Config.metrics of app.server accepts
HEADER_TIMEOUT = 10.0  # app.shutdown.HEADER_TIMEOUT
SEND_TIMEOUT = 60.0  # app.shutdown.SEND_TIMEOUT
BODY_TIMEOUT = 30.0  # app.slowclients.BODY_TIMEOUT


class CliError(Exception):
    """An error reported as one line on stderr, exit status 1."""


def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version
    except ImportError:  # pragma: no cover
        return "unknown"
    try:
        return dist_version("tidings")
    except PackageNotFoundError:
        pass
    try:  # running from a source tree that is not installed
        import tomllib

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "pyproject.toml"), "rb") as f:
            return tomllib.load(f)["project"]["version"]
    except (OSError, KeyError, ValueError):
        return "unknown"


# ------------------------------------------------------------------------------------ argument parsing
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) that point at --help."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32)


def _data_dir(args: argparse.Namespace) -> str:
    return getattr(args, "data", None) or os.environ.get("TIDINGS_DATA") or DEFAULT_DATA


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand that is not given --data leaves the value the main parser found
    common.add_argument("--data", metavar="DIR", default=argparse.SUPPRESS,
                        help="data directory (default: $TIDINGS_DATA, else ./data)")
    return common


def _examples(text: str) -> str:
    return "examples:\n" + textwrap.indent(textwrap.dedent(text).strip("\n"), "  ")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="tidings", formatter_class=_Formatter, parents=[common],
        description="tidings: a JMAP mail server (RFC 8620 core, RFC 8621 mail) on LMDB.",
        epilog=_examples("""
            tidings user add alice --email alice@example.org
            tidings import --user alice ~/mail/archive.mbox
            tidings serve --host 0.0.0.0 --port 8080
            tidings COMMAND --help      (details of one command)
        """))
    parser.add_argument("--version", action="version", version=f"tidings {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # serve
    p = sub.add_parser(
        "serve", parents=[common], formatter_class=_Formatter, help="run the JMAP server",
        description=textwrap.dedent("""
            Runs the JMAP server. Clients find it at /.well-known/jmap (RFC 8620 session resource)
            and authenticate with HTTP Basic as a user made with `tidings user add`.
            TLS is optional (most deployments sit behind a proxy that terminates it) but
            supported: give --tls-cert and --tls-key together."""),
        epilog=_examples("""
            tidings serve
            tidings serve --host 0.0.0.0 --port 443 --tls-cert cert.pem --tls-key key.pem
            tidings serve --demo --data ./data        (what `make serve` runs)
            tidings serve --lmtp-port 2424            (Postfix delivers by LMTP to 127.0.0.1:2424)
            TIDINGS_DEMO_PASSWORD=secret tidings serve --demo
        """))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    p.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain) to serve https with")
    p.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert")
    _engine_option(p)
    p.add_argument("--public-url", metavar="URL", default=os.environ.get("TIDINGS_PUBLIC_URL"),
                   help="scheme, host and optional path prefix of every URL in the session resource "
                        "(apiUrl, downloadUrl, uploadUrl, eventSourceUrl, the WebSocket url), e.g. "
                        "https://mail.example.org; only the session's URLs: tidings still serves its "
                        "paths at the root (default: $TIDINGS_PUBLIC_URL, else the scheme and host the "
                        "client used, or those a trusted proxy forwarded)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="log level (default: info)")
    p.add_argument("--log-format", choices=LOG_FORMATS, default=os.environ.get("TIDINGS_LOG_FORMAT") or "text",
                   help="text: one line with an ISO 8601 timestamp per record; json: one JSON object "
                        "per line (default: $TIDINGS_LOG_FORMAT, else text)")
    p.add_argument("--no-access-log", action="store_true",
                   help="do not log a line per request (time, client address, user, JMAP methods, "
                        "status, duration)")
    p.add_argument("--forwarded-allow-ips", metavar="LIST",
                   default=os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1",
                   help="comma list of proxy addresses or networks (or '*') whose X-Forwarded-For, "
                        "-Proto, -Host and Forwarded headers are believed: the client address, and the "
                        "scheme and host of the session's URLs (default: $FORWARDED_ALLOW_IPS, else 127.0.0.1)")
    p.add_argument("--metrics", choices=METRICS_MODES, default=os.environ.get("TIDINGS_METRICS") or "local",
                   help="GET /metrics (Prometheus, no authentication): off; local: only to clients on "
                        "loopback (default); on: to any client (firewall it, or keep it from the proxy)")
    p.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT, metavar="SECONDS",
                   help=f"close a connection whose request header is not complete this long after it "
                        f"opened or after its previous response, with 408 if part came (default: "
                        f"{HEADER_TIMEOUT:g}; 0: none)")
    p.add_argument("--body-timeout", type=float, default=BODY_TIMEOUT, metavar="SECONDS",
                   help=f"answer 408 and close when a request body stalls this long (default: "
                        f"{BODY_TIMEOUT:g}; 0: none)")
    p.add_argument("--send-timeout", type=float, default=SEND_TIMEOUT, metavar="SECONDS",
                   help=f"drop a connection whose client takes none of a response this long once the "
                        f"buffers are full (a download nobody reads; default: {SEND_TIMEOUT:g}; 0: none)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes sharing the port (default: 1)")
    p.add_argument("--demo", action="store_true",
                   help="create the user 'demo' if it does not exist (password: $TIDINGS_DEMO_PASSWORD, "
                        "else a random one printed once; `tidings user passwd demo` sets another); with "
                        "$TIDINGS_DEMO_PASSWORD set, an existing demo user's password is set to it")
    p.add_argument("--push-allow-http", action="store_true",
                   help="accept http:// PushSubscription URLs, not only https:// (tests with a loopback receiver)")
    p.add_argument("--lmtp-port", type=int, metavar="N",
                   help="also listen for LMTP (RFC 2033) on port N, so that an MTA delivers mail into "
                        "tidings (default: no LMTP); with --workers, one process owns the port")
    p.add_argument("--lmtp-host", default="127.0.0.1", metavar="ADDR",
                   help="address the LMTP listener binds (default: 127.0.0.1; LMTP has no "
                        "authentication: keep it where only the MTA reaches it)")
    g = p.add_argument_group(
        "sending mail (EmailSubmission)",
        "Mail to the domains of this server's users is delivered locally. Mail to other domains goes "
        "to an SMTP relay (your provider's submission server, or a local Postfix); without one, "
        "such recipients are refused when the EmailSubmission is created.")
    g.add_argument("--smtp-relay", metavar="HOST:PORT", default=os.environ.get("TIDINGS_SMTP_RELAY"),
                   help="the relay for other domains (default: $TIDINGS_SMTP_RELAY; port 587 if left out)")
    g.add_argument("--smtp-security", choices=("auto", "starttls", "tls", "none"),
                   default=os.environ.get("TIDINGS_SMTP_SECURITY") or "auto",
                   help="auto (default): implicit TLS on port 465, else STARTTLS when the relay offers it; "
                        "starttls: required; tls: implicit TLS; none: plain (a relay on loopback)")
    g.add_argument("--smtp-user", metavar="NAME", default=os.environ.get("TIDINGS_SMTP_USER"),
                   help="log in to the relay as NAME (password from --smtp-password-file or $TIDINGS_SMTP_PASSWORD)")
    g.add_argument("--smtp-password-file", metavar="FILE", help="a file whose first line is the relay password")
    g.add_argument("--smtp-ca-file", metavar="FILE", default=os.environ.get("TIDINGS_SMTP_CA_FILE"),
                   help="PEM CA certificates to trust for the relay, besides the system's")
    p.set_defaults(func=cmd_serve)

    # user
    pu = sub.add_parser(
        "user", parents=[common], formatter_class=_Formatter, help="add, list, change or delete users",
        description="Manages the users that may log in. Each user has one mail account.",
        epilog=_examples("""
            tidings user add alice --email alice@example.org
            tidings user list
            tidings user passwd alice
            tidings user delete alice --yes
        """))
    usub = pu.add_subparsers(dest="user_command", metavar="SUBCOMMAND", parser_class=_Parser)
    usub.required = True

    def password_options(q: argparse.ArgumentParser) -> None:
        g = q.add_mutually_exclusive_group()
        g.add_argument("--password", metavar="P",
                       help="the password (visible to other local users in the process list: prefer "
                            "--password-stdin or the prompt)")
        g.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")

    q = usub.add_parser(
        "add", parents=[common], formatter_class=_Formatter, help="create a user and its account",
        description=textwrap.dedent("""
            Creates a user with a mail account holding the standard mailboxes: Inbox, Drafts, Sent,
            Archive, Junk and Trash. Without --password or --password-stdin the password is asked
            for twice on the terminal."""),
        epilog=_examples("""
            tidings user add alice
            tidings user add bob --email bob@example.org --password-stdin < bob.pw
            echo 's3cret' | tidings user add carol --password-stdin
        """))
    q.add_argument("name", metavar="NAME", help="login name (no ':' or spaces)")
    password_options(q)
    q.add_argument("--email", metavar="ADDR", help="the user's address (default: NAME@localhost)")
    q.set_defaults(func=cmd_user_add)

    q = usub.add_parser(
        "list", parents=[common], formatter_class=_Formatter, help="list users",
        description="Lists every user: login name, email address and JMAP accountId, one per line.",
        epilog=_examples("tidings user list\ntidings user list --data /srv/tidings"))
    q.set_defaults(func=cmd_user_list)

    q = usub.add_parser(
        "passwd", parents=[common], formatter_class=_Formatter, help="change a user's password",
        description=textwrap.dedent("""
            Sets a new password. It takes effect at once, also in a running server; without
            --password or --password-stdin it is asked for twice on the terminal."""),
        epilog=_examples("tidings user passwd alice\nprintf '%s\\n' \"$PW\" | tidings user passwd alice --password-stdin"))
    q.add_argument("name", metavar="NAME")
    password_options(q)
    q.set_defaults(func=cmd_user_passwd)

    q = usub.add_parser(
        "delete", parents=[common], formatter_class=_Formatter, help="delete a user and all its mail",
        description=textwrap.dedent("""
            Deletes a user, its account and every mailbox and message in it. This cannot be undone.
            Asks you to type the user name to confirm, unless --yes is given (required when not
            on a terminal)."""),
        epilog=_examples("tidings user delete alice\ntidings user delete alice --yes"))
    q.add_argument("name", metavar="NAME")
    q.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    q.set_defaults(func=cmd_user_delete)

    q = usub.add_parser(
        "alias", parents=[common], formatter_class=_Formatter,
        help="add, remove or list a user's other addresses (aliases and whole domains)",
        description=textwrap.dedent("""
            A user receives mail for, and may send as (Identity/set, RFC 8621 §6), their own
            address and their aliases. An alias is an address (bob@example.net) or a whole
            domain (@example.net: every address in it). Without ADDR and --remove, lists them.
            Changes take effect at once, also in a running server."""),
        epilog=_examples("""
            tidings user alias alice alice@example.net postmaster@example.org
            tidings user alias alice @example.com
            tidings user alias alice --remove alice@example.net
            tidings user alias alice
        """))
    q.add_argument("name", metavar="NAME")
    q.add_argument("addresses", metavar="ADDR", nargs="*", help="an address, or @domain for all of it")
    q.add_argument("--remove", metavar="ADDR", action="append", default=[], help="remove this alias")
    q.set_defaults(func=cmd_user_alias)

    # share
    p = sub.add_parser(
        "share", parents=[common], formatter_class=_Formatter,
        help="share a user's mailbox, address book or calendar with another user",
        description=textwrap.dedent("""
            Gives another user rights on one of OWNER's mailboxes, as a mail client does with
            Mailbox/set shareWith (RFC 9670, RFC 8621 §2 MailboxRights). The other user then sees
            OWNER's account in their session with only the shared mailboxes and their mail. RIGHTS
            is a comma-separated list of: read (mayReadItems), add (mayAddItems), remove
            (mayRemoveItems), seen (maySetSeen), keywords (maySetKeywords), create (mayCreateChild),
            rename (mayRename), delete (mayDelete), submit (maySubmit), or all. With
            --address-book NAME instead of MAILBOX (RFC 9610 AddressBookRights): read (mayRead),
            write (mayWrite), admin (mayAdmin), delete (mayDelete); with --calendar NAME (the
            Calendars draft's CalendarRights): freebusy (mayReadFreeBusy), read (mayReadItems),
            write (mayWriteAll, which brings writeown, private and rsvp), writeown (mayWriteOwn),
            private (mayUpdatePrivate), rsvp (mayRSVP), admin (mayAdmin), delete (mayDelete).
            Rights not named are taken away. --revoke takes every right away. With none of MAILBOX,
            --address-book and --calendar, lists what OWNER shares. Takes effect at once, also in a
            running server."""),
        epilog=_examples("""
            tidings share alice Projects --with bob --rights read,seen
            tidings share alice Projects --with bob --rights all
            tidings share alice Projects --with bob --revoke
            tidings share alice --address-book Contacts --with bob --rights read,write
            tidings share alice --calendar Team --with bob --rights read,private
            tidings share alice
        """))
    p.add_argument("owner", metavar="OWNER", help="the user whose mailbox is shared")
    p.add_argument("mailbox", metavar="MAILBOX", nargs="?", help="its name, or its role (inbox, sent, ...)")
    p.add_argument("--address-book", metavar="NAME", help="share this address book instead (RIGHTS: read, write, "
                   "admin, delete)")
    p.add_argument("--calendar", metavar="NAME", help="share this calendar instead (RIGHTS: freebusy, read, "
                   "write, writeown, private, rsvp, admin, delete)")
    p.add_argument("--with", dest="grantee", metavar="USER", help="the user who gets the rights")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rights", default="read", help="what USER may do (default: read)")
    g.add_argument("--revoke", action="store_true", help="take every right of USER away")
    p.set_defaults(func=cmd_share)

    # token
    pt = sub.add_parser(
        "token", parents=[common], formatter_class=_Formatter,
        help="create, list or revoke bearer tokens (for clients that log in with a token)",
        description=textwrap.dedent("""
            Bearer tokens let a client log in with `Authorization: Bearer TOKEN` instead of a
            password (jmap-jam and other clients only speak Bearer). A token acts as its user,
            with the same rights, until it expires or is revoked; changing the password does not
            end it. Only a hash of it is stored: it is shown once, when created. Revoking or
            expiring takes effect on the next request, also in a running server."""),
        epilog=_examples("""
            tidings token create --user alice --name laptop --expires 90
            TOKEN=$(tidings token create --user alice | tail -n 1)
            tidings token list --user alice
            tidings token revoke K0001
        """))
    tsub = pt.add_subparsers(dest="token_command", metavar="SUBCOMMAND", parser_class=_Parser)
    tsub.required = True
    q = tsub.add_parser(
        "create", parents=[common], formatter_class=_Formatter, help="create a token and print it once",
        description=textwrap.dedent("""
            Creates a token for a user and prints it, alone on the last line of standard output
            (scripts read it from there: `| tail -n 1`). It is not shown again: store it now."""),
        epilog=_examples("""
            tidings token create --user alice
            tidings token create --user alice --name "phone" --expires 30
        """))
    q.add_argument("--user", metavar="NAME", required=True, help="the user the token logs in as")
    q.add_argument("--name", metavar="LABEL", help="a label to recognise it by in `tidings token list`")
    q.add_argument("--expires", metavar="DAYS", type=float,
                   help="expire after DAYS days (fractions allowed: 0.5 is 12 hours; default: never)")
    q.set_defaults(func=cmd_token_create)
    q = tsub.add_parser(
        "list", parents=[common], formatter_class=_Formatter, help="list tokens",
        description=textwrap.dedent("""
            Lists the tokens (never their secret): id, user, label, when created, when it expires
            and when it was last used (updated at most every 5 minutes), times in UTC."""),
        epilog=_examples("tidings token list\ntidings token list --user alice"))
    q.add_argument("--user", metavar="NAME", help="only this user's tokens")
    q.set_defaults(func=cmd_token_list)
    q = tsub.add_parser(
        "revoke", parents=[common], formatter_class=_Formatter, help="revoke a token",
        description=textwrap.dedent("""
            Deletes a token: the next request with it is refused (401), also in a running
            server. The push subscriptions created with it are destroyed (RFC 8620 §7.2)."""),
        epilog=_examples("tidings token revoke K0001"))
    q.add_argument("id", metavar="ID", help="the token id (see `tidings token list`)")
    q.set_defaults(func=cmd_token_revoke)

    # import
    p = sub.add_parser(
        "import", parents=[common], formatter_class=_Formatter,
        help="import mbox, .eml, Maildir mail and folders of message files",
        description=textwrap.dedent("""
            Imports existing mail into a user's account. FILE may be an mbox file (also gzipped), a
            single message (.eml), a Maildir folder (its cur/ and new/), or a plain folder of
            message files: each regular file directly in it is imported as an .eml or an mbox, as
            its start says (subfolders are not entered but listed: a subfolder is another mailbox,
            import it with its own command; hidden files are left out). Memory stays flat whatever
            the size: messages are read and stored one batch at a time.

            It is idempotent: a message whose exact bytes are already in the account is counted as
            "already present" and not stored twice, so an interrupted import can simply be run
            again. It is safe while the server is running. Messages go into the inbox, or into
            --mailbox (matched by name, case-insensitively, or by role such as "archive"; created,
            with any parents of an "A/B" path, if missing, when the first message is stored in it).
            receivedAt comes from the mbox "From " line, else the Maildir file time, else the Date
            header, else now; Maildir flags and mbox Status/X-Status headers become keywords
            ($seen, $answered, $flagged, $draft).

            Bad input does not stop the import: a file that cannot be read, a corrupt gzip file, a
            file or message that is not mail (no header field a message has: From, Date,
            Subject, ...) or an empty message in an mbox fails alone, with its reason, and the rest
            is imported. An empty file or folder is noted as "no messages" and creates nothing. A
            byte-order mark or blank lines in front of a file's first line are dropped. Only a
            storage error (such as a full disk) ends the run; what was stored stays, and running the
            same command again goes on. A FILE that does not exist is an error before anything is
            done.

            On a terminal a progress bar shows MB, messages, rate and ETA. At the end a summary
            counts messages imported, malformed but stored (the parser noted defects), already
            present and failed, then lists each failure (where, and why) and each note. Exit status:
            0 when nothing failed, 1 when something did.

            With --calendar NAME, FILE is an iCalendar (.ics) file instead: its events (VEVENTs,
            several per file; a VTIMEZONE is honoured) go into the calendar NAME (matched by name,
            case-insensitively; "Calendar" is the default one; created if missing). Events whose
            UID is already in the account are counted as already present. A component that cannot
            be read is listed as failed, with its reason, and the rest is imported."""),
        epilog=_examples("""
            tidings import --user alice ~/mail/inbox.mbox
            tidings import --user alice --calendar Work work.ics holidays.ics
            tidings import --user alice --mailbox Archive/2019 archive-2019.mbox.gz
            tidings import --user alice --mailbox Sent ~/Maildir/.Sent
            tidings import --user alice --keyword '$seen' old/*.eml
            tidings import --user alice --mailbox Saved ~/saved-messages/
            tidings import --user alice --address-book Contacts contacts.vcf

            With --address-book NAME the FILEs are vCard files (vCard 2.1, 3.0 and 4.0, several
            cards per file) imported as contact cards into that address book (matched by name,
            case-insensitively; created if missing; "Contacts" is the default one).  A card whose
            UID is already in the address book is replaced, so importing again is safe.  A
            malformed card fails alone, with its file, line and reason; the rest is imported.
        """))
    p.add_argument("--user", required=True, metavar="NAME", help="the user whose account receives the mail")
    p.add_argument("--mailbox", metavar="NAME", help="target mailbox (default: the inbox)")
    p.add_argument("--address-book", metavar="NAME",
                   help="import vCard files (.vcf) as contacts into this address book instead of mail")
    p.add_argument("--calendar", metavar="NAME", help="import iCalendar files into this calendar instead of mail")
    p.add_argument("--keyword", action="append", default=[], metavar="K",
                   help="add keyword K to every imported message (repeatable), e.g. '$seen'")
    p.add_argument("--batch", type=int, default=500, metavar="N",
                   help="messages per write transaction (default: 500)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="mbox file, .eml file, Maildir folder or folder of message files")
    _engine_option(p)
    p.set_defaults(func=cmd_import)

    # deliver
    p = sub.add_parser(
        "deliver", parents=[common], formatter_class=_Formatter,
        help="deliver one message from standard input (for an MTA's pipe transport)",
        description=textwrap.dedent("""
            Delivers the message on standard input into a user's inbox (or --mailbox), as mail
            arriving by LMTP is: threaded, indexed and pushed to connected clients, with
            Return-Path and Received fields prepended, and an automatic reply when the user's
            vacation response is on. The user is --user, or the owner of --recipient (an address
            or alias). The envelope sender is --sender, else a Return-Path or mbox "From " line the
            message starts with (Postfix pipe flags R and F). The same message delivered twice is
            stored once. Safe while the server runs.

            Exit status, as MTA pipe transports expect (sysexits.h): 0 delivered (or already
            there), 67 (EX_NOUSER) no such user or address, 65 (EX_DATAERR) the input is not a
            message, 73 (EX_CANTCREAT) the message would take the account over its quota
            (`tidings quota`; nothing stored, the MTA bounces it, as LMTP's 552 5.2.2), 75
            (EX_TEMPFAIL) a temporary failure such as a full disk: the MTA keeps the message and
            tries again."""),
        epilog=_examples("""
            tidings deliver --user alice < message.eml
            tidings deliver --recipient alice@example.org --sender bob@example.net < message.eml
            tidings deliver --user alice --mailbox Lists < digest.eml
            (Postfix master.cf) tidings unix - n n - - pipe
              flags=R user=tidings argv=/usr/local/bin/tidings deliver --data /srv/tidings
              --recipient ${recipient} --sender ${sender}
        """))
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="NAME", help="the user whose account receives the message")
    who.add_argument("--recipient", metavar="ADDR", help="the recipient address: its owner receives it")
    p.add_argument("--sender", metavar="ADDR",
                   help="the envelope sender (default: the message's leading Return-Path or From_ line)")
    p.add_argument("--mailbox", metavar="NAME", help="target mailbox (default: the inbox; created if missing)")
    p.set_defaults(func=cmd_deliver)

    # reindex
    p = sub.add_parser(
        "reindex", parents=[common], formatter_class=_Formatter, help="rebuild the full-text index",
        description=textwrap.dedent("""
            Rebuilds the full-text index of one account (--user) or of every account from the
            messages in the store, with progress. Run it after changing --search-engine: that and
            this command are all a switch of engine takes. When no server is running it rebuilds
            at once; when one is, it queues the rebuild and the server's background indexer does
            it (searches stay exact meanwhile: they wait for the account's queue)."""),
        epilog=_examples("""
            tidings reindex --user alice
            tidings reindex --search-engine whoosh
        """))
    p.add_argument("--user", metavar="NAME", help="only this user's account (default: every account)")
    _engine_option(p)
    p.set_defaults(func=cmd_reindex)

    # check
    p = sub.add_parser(
        "check", parents=[common], formatter_class=_Formatter, help="compare the store and the index",
        description=textwrap.dedent("""
            Compares, for one account (--user) or every account, the emails in the store with the
            documents in the full-text index, and reports every difference: emails missing from
            the index, documents of emails that no longer exist, work still queued for the
            indexer, and an index that cannot be read (a file cut short by a full disk). Exit
            status 0 when they agree, 1 when they differ (run `tidings reindex`).
            Also reports the blobs nothing references: how many and how large are reclaimable
            now (past the grace period: run `tidings gc`) and how many are within it."""),
        epilog=_examples("tidings check\ntidings check --user alice --search-engine whoosh"))
    p.add_argument("--user", metavar="NAME", help="only this user's account (default: every account)")
    _engine_option(p)
    p.set_defaults(func=cmd_check)

    # gc
    p = sub.add_parser(
        "gc", parents=[common], formatter_class=_Formatter, help="remove blobs nothing references",
        description=textwrap.dedent("""
            Removes the blobs nothing references any more once they have been unreferenced for
            the grace period: uploads no email used, the messages of destroyed emails, blobs their
            holder (e.g. the outgoing queue) released; a blob an email or a holder references is
            never removed. Also removes blob files no write recorded (a crash mid-upload). The
            server does this by itself every TIDINGS_BLOB_GC_INTERVAL seconds (default 600); only
            one process collects at a time. Prints what was reclaimed; the space freed inside
            the LMDB file is reused by later writes, blob files are deleted."""),
        epilog=_examples("tidings gc\ntidings gc --dry-run\ntidings gc --grace 0   # everything unreferenced now"))
    p.add_argument("--grace", type=float, metavar="SECONDS", default=None,
                   help="how long a blob stays after it was last referenced or stored "
                        "(default: $TIDINGS_BLOB_GRACE_SECONDS, else 3600)")
    p.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    p.set_defaults(func=cmd_gc)

    from app import quotacli  # quota set / show / list

    quotacli.register(sub, common, _Formatter, _Parser, _examples)
    from app import backup, export  # backup / restore, export

    for module in (backup, export):
        module.register(sub, common, _Formatter, _Parser, _examples)
    return parser


def _engine_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--search-engine", choices=ENGINES,
                   default=os.environ.get("TIDINGS_SEARCH_ENGINE") or "tantivy",
                   help="full-text engine: tantivy (fast, the default) or whoosh (pure Python) "
                        "(default: $TIDINGS_SEARCH_ENGINE, else tantivy)")


# -------------------------------------------------------------------------------------------- helpers
def _store_exists(data: str) -> bool:
    return os.path.isfile(os.path.join(data, "data.mdb"))


def _open(data: str, create: bool = False):
    from store import open_store

    if not create and not _store_exists(data):
        raise CliError(f"no tidings data in {data} (create a user first: tidings user add NAME --data {data})")
    try:
        store = open_store(data)
    except Exception as exc:  # lmdb.Error and friends: one line
        raise CliError(f"cannot open the data directory {data}: {exc}") from exc
    from app.push.bus import announce_commits

    announce_commits(store, data)  # a running server pushes what this command changes at once
    return store


def existing_mailbox(store, account_id: str, owner: str, name: str) -> dict:
    """The mailbox of `owner`'s account named `name` (or with that role); CliError if none."""
    from app.mailimport import find_mailbox

    try:
        mailbox, _ = find_mailbox(store, account_id, name)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    if mailbox is None:
        raise CliError(f"{owner} has no mailbox {name!r}")
    return mailbox


def _check_name(name: str) -> None:
    if not name or len(name.encode()) > 255:
        raise CliError("a user name must be 1 to 255 bytes long")
    if ":" in name or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise CliError(f"bad user name {name!r}: no ':', spaces or control characters")


def _check_email(addr: str) -> None:
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() or ord(ch) < 32 for ch in addr):
        raise CliError(f"bad email address {addr!r}")


def _read_password(args: argparse.Namespace) -> str:
    if args.password is not None:
        password = args.password
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password and getpass.getpass("Password (again): ") != password:
            raise CliError("the passwords do not match")
    else:
        raise CliError("no password given: use --password, --password-stdin, or run on a terminal to be asked")
    if not password:
        raise CliError("the password is empty")
    return password


def _user(store, name: str) -> dict:
    user = store.user(name)
    if user is None:
        raise CliError(f"no user {name!r} (list them with: tidings user list)")
    return user


# ------------------------------------------------------------------------------------------- commands
def cmd_user_add(args: argparse.Namespace) -> int:
    from app.auth import hash_password

    _check_name(args.name)
    addr = args.email or f"{args.name}@localhost"
    _check_email(addr)
    data = _data_dir(args)
    store = _open(data, create=True)
    try:
        if store.user(args.name) is not None:
            raise CliError(f"user {args.name!r} already exists")
        password = _read_password(args)
        user = store.create_user(args.name, hash_password(password), addr)
    finally:
        store.close()
    print(f"created user {user['name']} <{user['email']}>, account {user['accountId']}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    store = _open(_data_dir(args))
    try:
        users = sorted(store.users(), key=lambda u: u["name"])
    finally:
        store.close()
    if not users:
        print("no users (create one with: tidings user add NAME)", file=sys.stderr)
        return 0
    rows = [("NAME", "EMAIL", "ACCOUNT")] + [(u["name"], u.get("email") or "", u["accountId"]) for u in users]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    from app.auth import hash_password

    store = _open(_data_dir(args))
    try:
        _user(store, args.name)
        password = _read_password(args)
        store.set_password_hash(args.name, hash_password(password))
    finally:
        store.close()
    print(f"password of {args.name} changed")
    return 0


def cmd_user_delete(args: argparse.Namespace) -> int:
    store = _open(_data_dir(args))
    try:
        user = _user(store, args.name)
        if not args.yes:
            if not sys.stdin.isatty():
                raise CliError("not deleting without confirmation: pass --yes")
            print(f"This deletes user {user['name']} <{user.get('email')}> with account {user['accountId']} "
                  "and all its mail, for good.", file=sys.stderr)
            try:
                answer = input("Type the user name to confirm: ")
            except EOFError:
                answer = ""
            if answer.strip() != args.name:
                raise CliError("not confirmed: nothing deleted")
        store.delete_user(args.name)
    finally:
        store.close()
    print(f"deleted user {args.name} and its account {user['accountId']}")
    return 0


def cmd_user_alias(args: argparse.Namespace) -> int:
    from store import StoreError

    for addr in args.addresses:
        if not addr.startswith("@"):
            _check_email(addr)
        elif len(addr) < 2 or any(ch.isspace() or ch == "@" for ch in addr[1:]):
            raise CliError(f"bad domain {addr!r}: @ then the domain name")
    store = _open(_data_dir(args))
    try:
        user = _user(store, args.name)
        aliases = list(user.get("aliases", ()))
        known = {a.lower() for a in aliases}
        for addr in args.remove:
            if addr.lower() not in known:
                raise CliError(f"{addr!r} is not an alias of {args.name}")
        aliases = [a for a in aliases if a.lower() not in {r.lower() for r in args.remove}]
        aliases += [a for a in dict.fromkeys(args.addresses) if a.lower() not in known
                    and a.lower() != (user.get("email") or "").lower()]
        if args.addresses or args.remove:
            try:
                user = store.set_aliases(args.name, aliases)
            except StoreError as exc:
                raise CliError(str(exc)) from exc
    finally:
        store.close()
    print(f"{user['name']} <{user.get('email')}>" + "".join(f"\n  alias {a}" for a in user.get("aliases", ())))
    return 0


SHARE_RIGHTS = {"read": "mayReadItems", "add": "mayAddItems", "remove": "mayRemoveItems", "seen": "maySetSeen",
                "keywords": "maySetKeywords", "create": "mayCreateChild", "rename": "mayRename",
                "delete": "mayDelete", "submit": "maySubmit"}
# RFC 9610 §2 AddressBookRights; the Calendars draft's CalendarRights
BOOK_SHARE_RIGHTS = {"read": "mayRead", "write": "mayWrite", "admin": "mayAdmin", "delete": "mayDelete"}
CALENDAR_SHARE_RIGHTS = {"freebusy": "mayReadFreeBusy", "read": "mayReadItems", "write": "mayWriteAll",
                         "writeown": "mayWriteOwn", "private": "mayUpdatePrivate", "rsvp": "mayRSVP",
                         "admin": "mayAdmin", "delete": "mayDelete"}


def _shared_container(args: argparse.Namespace):
    """(the data type, its rights words, what the user calls it) of `tidings share`'s target."""
    if args.address_book is not None:
        from app.contacts.addressbook import ADDRESS_BOOK

        return ADDRESS_BOOK, BOOK_SHARE_RIGHTS, "address book"
    from app.calendar.calendar import CALENDAR

    return CALENDAR, CALENDAR_SHARE_RIGHTS, "calendar"


def _rights_words(text: str, words: dict[str, str]) -> set[str]:
    given = {w.strip().lower() for w in text.split(",") if w.strip()}
    unknown = given - set(words) - {"all"}
    if unknown or not given:
        raise CliError(f"unknown right(s) {', '.join(sorted(unknown)) or '(none)'}: use {', '.join(words)} or all")
    return set(words) if "all" in given else given


def cmd_share(args: argparse.Namespace) -> int:
    store = _open(_data_dir(args))
    try:
        owner = _user(store, args.owner)
        account = owner["accountId"]
        names = {u["accountId"]: u["name"] for u in store.users()}
        if sum(x is not None for x in (args.mailbox, args.address_book, args.calendar)) > 1:
            raise CliError("share one thing at a time: MAILBOX, --address-book or --calendar")
        if args.mailbox is None and args.address_book is None and args.calendar is None:
            return _list_shares(store, args.owner, account, names)
        if not args.grantee:
            raise CliError("--with USER is required to share")
        grantee = _user(store, args.grantee)
        if grantee["accountId"] == account:
            raise CliError("the owner has every right already")
        if args.mailbox is not None:
            words, what = SHARE_RIGHTS, "mailbox"
            target = existing_mailbox(store, account, args.owner, args.mailbox)
        else:
            dt, words, what = _shared_container(args)
            wanted = (args.address_book if args.address_book is not None else args.calendar).casefold()
            with store.read(account) as r:
                target = next((o for i in dt.all_ids(None, r) if (o := dt.fetch(None, r, i))
                               and o["name"].casefold() == wanted), None)
            if target is None:
                raise CliError(f"{args.owner} has no {what} {wanted!r}")
        granted = set() if args.revoke else _rights_words(args.rights, words)
        rights = {right: short in granted for short, right in words.items()}
        with store.write(account) as w:
            if args.mailbox is not None:
                share_with = dict(w.mailbox(target["id"]).get("shareWith") or {})
            else:
                current = dt.fetch(None, w, target["id"])
                share_with = dict(current.get("shareWith") or {})
            if any(rights.values()):
                share_with[grantee["accountId"]] = rights
            else:
                share_with.pop(grantee["accountId"], None)
            if args.mailbox is not None:
                w.update_mailbox(target["id"], {"shareWith": share_with or None})
            else:
                problems: dict[str, str] = {}
                fields = {"shareWith": share_with or None}
                dt.check_share_with(SimpleNamespace(store=store), w, fields, current, problems)
                if problems:
                    raise CliError(problems["shareWith"])
                dt.update(None, w, target["id"], current, fields)
    finally:
        store.close()
    shown = ",".join(sorted(granted)) if granted else "nothing (revoked)"
    print(f"{args.owner}'s {what} {target['name']!r}: {args.grantee} may {shown}")
    return 0


def _list_shares(store, owner_name: str, account: str, names: dict[str, str]) -> int:
    """`tidings share OWNER`: what OWNER shares, one line per grantee of a mailbox, address book or
    calendar (name, grantee, rights; address books and calendars named with their kind)."""
    from app.calendar.calendar import CALENDAR
    from app.contacts.addressbook import ADDRESS_BOOK

    lines = []
    with store.read(account) as r:
        for mb in r.mailboxes():
            for grantee, rights in (mb.get("shareWith") or {}).items():
                granted = [short for short, right in SHARE_RIGHTS.items() if rights.get(right)]
                lines.append(f"{mb['name']}\t{names.get(grantee, grantee)}\t{','.join(granted)}")
        for dt, words, kind in ((ADDRESS_BOOK, BOOK_SHARE_RIGHTS, "address book"),
                                (CALENDAR, CALENDAR_SHARE_RIGHTS, "calendar")):
            for obj_id in dt.all_ids(None, r):
                obj = dt.fetch(None, r, obj_id) or {}
                for grantee, rights in (obj.get("shareWith") or {}).items():
                    granted = [short for short, right in words.items() if rights.get(right)]
                    lines.append(f"{kind}: {obj['name']}\t{names.get(grantee, grantee)}\t{','.join(granted)}")
    print("\n".join(lines) if lines else f"{owner_name} shares nothing")
    return 0


def _utc(seconds: int | None, never: str = "never") -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)) if seconds is not None else never


def cmd_token_create(args: argparse.Namespace) -> int:
    import math

    from app.auth import create_token

    if args.expires is not None and not (0 < args.expires <= 36500 and math.isfinite(args.expires)):
        raise CliError("--expires must be a number of days above 0 (at most 36500)")
    label = args.name
    if label is not None and (not label or len(label) > 100 or any(ord(ch) < 32 or ord(ch) == 127 for ch in label)):
        raise CliError("a token label is 1 to 100 characters, without control characters")
    store = _open(_data_dir(args))
    try:
        _user(store, args.user)
        expires = math.ceil(time.time() + args.expires * 86400) if args.expires is not None else None
        record, token = create_token(store, args.user, label, expires)
    finally:
        store.close()
    named = f" ({label})" if label else ""
    print(f"created token {record['id']}{named} for {args.user}, expires {_utc(expires)}; "
          "it is shown only now:")
    print(token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    store = _open(_data_dir(args))
    try:
        if args.user:
            _user(store, args.user)
        tokens = store.tokens(args.user)
    finally:
        store.close()
    if not tokens:
        print("no tokens (create one with: tidings token create --user NAME)", file=sys.stderr)
        return 0
    now = time.time()
    rows = [("ID", "USER", "NAME", "CREATED", "EXPIRES", "LAST USED")] + [
        (t["id"], t["user"], t["name"] or "-", _utc(t["created"]),
         _utc(t["expires"]) + (" (expired)" if t["expires"] is not None and t["expires"] <= now else ""),
         _utc(t["lastUsed"])) for t in tokens]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(r[:5], widths, strict=True)) + "  " + r[5])
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from app.auth import TOKEN_PREFIX
    from app.pushsubscription import PUSH_SUBSCRIPTION
    from store import NotFound, ids

    if not ids.is_token_id(args.id):
        raise CliError(f"bad token id {args.id!r}: K and hex digits, as `tidings token list` shows")
    store = _open(_data_dir(args))
    try:
        try:
            record = store.revoke_token(args.id)
        except NotFound:
            raise CliError(f"no token {args.id} (list them with: tidings token list)") from None
        # RFC 8620 §7.2: the push subscriptions tied to revoked credentials MUST be destroyed
        collection = PUSH_SUBSCRIPTION.collection
        with store.write(record["accountId"]) as w:
            subscriptions = list(w.record_ids(collection, "credential", equals=TOKEN_PREFIX + args.id))
            for sub_id in subscriptions:
                w.destroy_record(collection, sub_id)
    finally:
        store.close()
    print(f"revoked token {args.id} of {record['user']}"
          + (f"; destroyed {len(subscriptions)} push subscription(s)" if subscriptions else ""))
    return 0


def cmd_import_vcards(args: argparse.Namespace) -> int:
    """`tidings import --address-book NAME FILE...`: vCard files into an address book."""
    from app.contacts.importer import import_vcards

    if args.mailbox or args.keyword:
        raise CliError("--address-book imports contacts: --mailbox and --keyword are for mail")
    for path in args.files:  # a path that does not exist is a mistake in the command: nothing is done
        if not os.path.isfile(path):
            raise CliError(f"{path}: no such file")
    store = _open(_data_dir(args))
    try:
        user = _user(store, args.user)
        shown = not args.no_progress and sys.stderr.isatty()
        count = [0]

        def on_card() -> None:
            count[0] += 1
            if shown and count[0] % 50 == 0:
                print(f"\r{count[0]} cards read", end="", file=sys.stderr, flush=True)

        report = import_vcards(store, user["accountId"], args.address_book, args.files, on_card=on_card)
        if shown:
            print(f"\r{count[0]} cards read", file=sys.stderr)
    finally:
        store.close()
    if report.book_created:
        print(f"created address book {report.book_name!r}", file=sys.stderr)
    print(f"{user['name']}, address book {report.book_name!r}: {report.imported} cards imported, "
          f"{report.updated} updated (already there by UID), {len(report.failed)} failed")
    for where, why in report.failed:
        print(f"  failed: {where}: {why}")
    return 1 if report.failed else 0


def cmd_import_calendar(args: argparse.Namespace) -> int:
    from app.calendar.importer import import_ics

    if args.mailbox or args.keyword:
        raise CliError("--calendar imports events: --mailbox and --keyword are for mail")
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        raise CliError(f"no such file: {missing[0]}")
    store = _open(_data_dir(args))
    try:
        user = _user(store, args.user)
        report = import_ics(store, user, args.calendar, args.files)
    finally:
        store.close()
    print(f"{report.imported + report.present + len(report.failed)} events into {user['name']}/"
          f"{report.calendar or args.calendar}{' (created)' if report.created_calendar else ''}:")
    for label, n in (("imported", report.imported), ("already present", report.present),
                     ("failed", len(report.failed))):
        print(f"  {label + ':':<22}{n:>8}")
    for where, why in report.failed:
        print(f"    failed: {where}: {why}")
    return 1 if report.failed else 0


def cmd_import(args: argparse.Namespace) -> int:
    if args.address_book is not None:
        return cmd_import_vcards(args)
    if args.calendar:
        return cmd_import_calendar(args)
    from app.mailimport import Importer, SourceError, find_mailbox, open_sources, valid_keyword
    from store import OverQuota

    keywords = set()
    for k in args.keyword:
        if not valid_keyword(k):
            raise CliError(f"bad keyword {k!r}: 1-255 printable ASCII characters, none of ( ) {{ ] % * \" \\")
        keywords.add(k.lower())
    if args.batch < 1:
        raise CliError("--batch must be at least 1")
    sources = []
    for path in args.files:  # a path that does not exist is a mistake in the command: nothing is done
        try:
            sources.extend(open_sources(path))
        except SourceError as exc:
            raise CliError(str(exc)) from exc
    data = _data_dir(args)
    store = _open(data)
    try:
        user = _user(store, args.user)
        account_id = user["accountId"]
        try:
            # a missing mailbox is created only when the first message is stored in it
            mailbox, create_path = find_mailbox(store, account_id, args.mailbox)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        from app.search import SearchService

        search = SearchService(store, data, args.search_engine)
        # index each batch as it is stored, unless a running server is the index writer
        indexing = search.try_become_writer()
        importer = Importer(store, account_id, mailbox["id"] if mailbox else None, keywords,
                            batch_size=args.batch, create_path=create_path,
                            after_batch=(lambda stored: _index_after_batch(store, search, account_id, stored))
                            if indexing else None)
        bar = _progress(sources, enabled=not args.no_progress and sys.stderr.isatty())
        try:
            report = importer.run(sources, on_message=bar.message if bar else None,
                                  on_source_done=bar.source_done if bar else None)
        except KeyboardInterrupt:
            if bar:
                bar.close()  # before the message, so that it is not drawn over
            r = importer.report
            print(f"interrupted after storing {r.imported + r.malformed} messages; run the same command "
                  "again to go on (what is stored is skipped)", file=sys.stderr)
            return 130
        except OverQuota as exc:
            if bar:
                bar.close()
            r = importer.report
            raise CliError(f"{exc}: stopped at {importer.stopped_at} after storing {r.imported + r.malformed} "
                           f"messages ({r.present} already there, {len(r.failed)} failed); raise the limit "
                           f"with `tidings quota set {user['name']}` or make room, then run the same command "
                           "again to go on (what is stored is skipped)") from exc
        except Exception as exc:  # a storage error (disk or map full): the one thing that ends the run
            if bar:
                bar.close()
            r = importer.report
            why = exc.logged() if hasattr(exc, "logged") else str(exc)  # the operator: the details too
            raise CliError(f"stopped after storing {r.imported + r.malformed} messages: {type(exc).__name__}: "
                           f"{why}; once fixed, run the same command again to go on (what is stored is "
                           "skipped)") from exc
        finally:
            if bar:
                bar.close()
            store.release_memory()  # before the index's final merge maps its segments
            search.close()
        if importer.created_mailbox:
            print(f"created mailbox {args.mailbox or 'Inbox'!r}", file=sys.stderr)
        if not indexing:
            print("the running server indexes the imported messages for search", file=sys.stderr)
    finally:
        store.close()
    wanted = args.mailbox or "Inbox"
    shown = mailbox["name"] if mailbox is not None and "/" not in wanted else wanted
    _print_report(report, user["name"], shown)
    if mailbox is None and not importer.created_mailbox:
        print(f"  mailbox {wanted!r} not created: nothing was stored")
    return 1 if report.failed else 0


EX_DATAERR, EX_NOUSER, EX_CANTCREAT, EX_TEMPFAIL = 65, 67, 73, 75  # sysexits.h


def cmd_deliver(args: argparse.Namespace) -> int:
    from app.delivery import (
        MailboxFull,
        NotAMessage,
        TemporaryFailure,
        deliver,
        has_return_path,
        return_path,
        split_envelope_lead,
        trace_fields,
    )

    prog = "tidings deliver"
    try:
        raw = sys.stdin.buffer.read()
    except OSError as exc:
        print(f"{prog}: cannot read the message: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    raw, from_line = split_envelope_lead(raw)
    sender = args.sender if args.sender is not None else return_path(raw)
    if sender is None:
        sender = from_line or ""
    data = _data_dir(args)
    try:
        store = _open(data)
    except CliError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EX_TEMPFAIL  # a data directory not (yet) there or not readable: the MTA retries
    try:
        user = store.user(args.user) if args.user else store.user_for_address(args.recipient)
        if user is None:
            who = f"user {args.user!r}" if args.user else f"address {args.recipient!r}"
            print(f"{prog}: no such {who}", file=sys.stderr)
            return EX_NOUSER
        trace = b"" if has_return_path(raw) else trace_fields(sender, args.recipient, protocol="local")
        try:
            result = deliver(store, user, raw, envelope_sender=sender, trace=trace, mailbox=args.mailbox,
                             reply_queue=_reply_queue())
        except NotAMessage as exc:
            print(f"{prog}: not a message: {exc}", file=sys.stderr)
            return EX_DATAERR
        except MailboxFull as exc:
            print(f"{prog}: 5.2.2 mailbox full: {exc}", file=sys.stderr)
            return EX_CANTCREAT
        except TemporaryFailure as exc:
            print(f"{prog}: temporary failure{' (storage full)' if exc.full else ''}: {exc}", file=sys.stderr)
            return EX_TEMPFAIL
    except Exception as exc:  # noqa: BLE001 - anything unforeseen: the MTA keeps the message
        print(f"{prog}: temporary failure: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    finally:
        store.close()
    state = "delivered" if result.created else "already there"
    print(f"{state}: {result.email_id} to {user['name']}"
          + (" (malformed, stored)" if result.defects else "")
          + (" (automatic reply queued)" if result.replied else ""), file=sys.stderr)
    return 0


def _reply_queue():
    """Where automatic replies go: the outgoing queue, which a running server's deliverer sends
    (it is woken by the change bus; without a running server they wait in the queue)."""
    from app.submission.outbox import enqueue

    return enqueue


def _index_after_batch(store, search, account_id: str, stored: dict[str, bytes]) -> None:
    """While the import is the index writer it indexes every account's queue, not only its own
    (a server started meanwhile waits for it), and keeps its mapped memory small."""
    search.drain(account_id, known=stored)
    for other in store.accounts_with_index_queue():
        if other != account_id:
            search.drain(other)
    store.release_memory()
    search.release_memory()  # what the index's merges read meanwhile


def _accounts(store, name: str | None) -> list[tuple[str, str]]:
    users = [_user(store, name)] if name else store.users()
    return [(u["name"], u["accountId"]) for u in users]


def cmd_reindex(args: argparse.Namespace) -> int:
    from app.search import SearchService

    data = _data_dir(args)
    store = _open(data)
    search = SearchService(store, data, args.search_engine)
    try:
        accounts = _accounts(store, args.user)
        if not search.try_become_writer():
            for name, account_id in accounts:
                n = store.queue_reindex(account_id)
                print(f"{name}: queued {n} messages; the running server rebuilds the index")
            return 0
        for name, account_id in accounts:
            search.index.drop(account_id)
            n = store.queue_reindex(account_id)
            bar = None
            if sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=n, unit="msg", desc=f"indexing {name}", file=sys.stderr)
            started = time.monotonic()
            def progress(n: int, bar=bar) -> None:
                store.release_memory()  # indexing reads every message through the memory map
                search.release_memory()  # and the index's merges their segments
                if bar:
                    bar.update(n)

            search.drain(account_id, progress=progress)
            if bar:
                bar.close()
            seconds = time.monotonic() - started
            print(f"{name}: indexed {n} messages with {args.search_engine} in {seconds:.1f} s")
    finally:
        search.close()
        store.close()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from app.search import SearchService
    from indexer import IndexMismatch, Match, Not
    from store import disk_nearly_full

    data = _data_dir(args)
    store = _open(data)
    search = SearchService(store, data, args.search_engine)
    differ = False
    try:
        for name, account_id in _accounts(store, args.user):
            with store.read(account_id) as reader:
                stored = set(reader.email_ids_by_date(None))
            queued = store.index_queue_length(account_id)
            try:
                search.index.refresh(account_id)
                indexed = search.index.search(account_id, Not(Match("text", "")))  # every document
            except IndexMismatch as exc:  # a marker or index file cut short by a full disk, ...
                print(f"{name}: {len(stored)} emails stored, index UNREADABLE, {queued} queued: {exc}")
                print(f"  run `tidings reindex --user {name}` (a running server also rebuilds it at the "
                      "account's next search)")
                differ = True
                continue
            missing, extra = sorted(stored - indexed), sorted(indexed - stored)
            state = "ok" if not (missing or extra) else "DIFFERENT"
            print(f"{name}: {len(stored)} emails stored, {len(indexed)} indexed, {queued} queued: {state}")
            for label, ids in (("not indexed", missing), ("indexed but not stored", extra)):
                if ids:
                    print(f"  {label}: {len(ids)} ({', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''})")
            if (missing or extra) and queued:
                if disk_nearly_full(data):
                    print("  (the indexer has queued work it cannot write: the disk is full; make room, "
                          "then run check again)")
                else:
                    print("  (the indexer has queued work; run check again once it is done)")
            differ = differ or bool(missing or extra)
        if not args.user:
            from app.blob.gc import grace_seconds

            report = store.collect_garbage(grace_seconds(), dry_run=True)
            print(f"blobs: {report['blobs']} reclaimable ({_octets(report['bytes'])}, "
                  f"{report['files']} files; run tidings gc), {report['pending']} unreferenced "
                  f"within the grace period ({_octets(report['pendingBytes'])})")
    finally:
        search.close()
        store.close()
    return 1 if differ else 0


def _octets(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def cmd_gc(args: argparse.Namespace) -> int:
    from app.blob.gc import collect, grace_seconds

    data = _data_dir(args)
    store = _open(data)
    grace = grace_seconds() if args.grace is None else args.grace
    if grace < 0:
        raise CliError("--grace must not be negative")
    try:
        report = collect(store, data, grace, dry_run=args.dry_run)
    finally:
        store.close()
    if report is None:
        raise CliError("another process is collecting blobs right now; try again later")
    verb = "would reclaim" if args.dry_run else "reclaimed"
    print(f"{verb} {report['blobs']} blobs and {report['files']} files, {_octets(report['bytes'])} "
          f"(grace {grace:g} s); {report['pending']} unreferenced blobs within the grace period "
          f"({_octets(report['pendingBytes'])})")
    return 0


class _Bar:
    """tqdm over the bytes of all sources, with the message count and rate as postfix."""

    def __init__(self, sizes: list[int]):
        from tqdm import tqdm

        self.tqdm = tqdm(total=sum(sizes), unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                         dynamic_ncols=True, smoothing=0.05, desc="importing")
        self.offsets = [0]  # bytes of the sources before each one
        for size in sizes:
            self.offsets.append(self.offsets[-1] + size)
        self.count = 0
        self.started = time.monotonic()

    def message(self, index: int, msg) -> None:
        self.count += 1
        self._advance(self.offsets[index] + msg.consumed)

    def source_done(self, index: int) -> None:
        """The whole of source index is read (also one without messages, or that failed early)."""
        self._advance(self.offsets[index + 1])

    def _advance(self, position: int) -> None:
        if position > self.tqdm.n:
            self.tqdm.update(position - self.tqdm.n)
        elapsed = time.monotonic() - self.started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        self.tqdm.set_postfix_str(f"{self.count:,} msgs, {rate:,.0f} msg/s", refresh=False)

    def close(self) -> None:
        self.tqdm.close()


def _progress(sources, enabled: bool) -> _Bar | None:
    if not enabled:
        return None
    return _Bar([s.size for s in sources])


def _print_report(report, user: str, mailbox: str) -> None:
    rate = report.total / report.seconds if report.seconds > 0 else 0.0
    print(f"{report.total} message{'' if report.total == 1 else 's'} ({report.bytes / 1e6:.1f} MB) in {report.seconds:.1f} s "
          f"({rate:,.0f} msg/s) into {user}/{mailbox}:")
    rows = [("imported", report.imported), ("malformed but stored", report.malformed),
            ("already present", report.present), ("failed", len(report.failed))]
    for label, n in rows:
        print(f"  {label + ':':<22}{n:>8}")
    if report.defect_counts:  # categories of app.mail: "date-invalid", "multipart-no-close-boundary", ...
        kinds = sorted(report.defect_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        print("    defects: " + ", ".join(f"{kind} {n}" for kind, n in kinds))
    for where, defect in report.malformed_examples[:5]:
        print(f"    malformed: {where}: {defect}")
    for where, reason in report.failed:  # every one, so that each can be dealt with
        print(f"    failed: {where}: {reason}")
    for where, note in report.notes:
        print(f"    note: {where}: {note}")


# -------------------------------------------------------------------------------------------- serve
def _env_config():
    from app.server import Config

    return Config(data_dir=os.environ.get("TIDINGS_DATA") or DEFAULT_DATA,
                  search_engine=os.environ.get("TIDINGS_SEARCH_ENGINE") or "tantivy",
                  public_url=os.environ.get("TIDINGS_PUBLIC_URL") or None,
                  push_allow_http=os.environ.get("TIDINGS_PUSH_ALLOW_HTTP") == "1",
                  smtp_relay=_relay_from_env(),
                  lmtp_port=int(os.environ["TIDINGS_LMTP_PORT"]) if os.environ.get("TIDINGS_LMTP_PORT") else None,
                  lmtp_host=os.environ.get("TIDINGS_LMTP_HOST") or "127.0.0.1",
                  forwarded_allow_ips=os.environ.get("TIDINGS_FORWARDED_ALLOW_IPS") or "127.0.0.1",
                  metrics=os.environ.get("TIDINGS_METRICS") or "local",
                  access_log=os.environ.get("TIDINGS_ACCESS_LOG") != "0",
                  body_timeout=float(os.environ.get("TIDINGS_BODY_TIMEOUT") or BODY_TIMEOUT))


def _relay_from_env():
    from app.submission.relay import RelayConfig

    address = os.environ.get("TIDINGS_SMTP_RELAY")
    if not address:
        return None
    return RelayConfig.parse(address, security=os.environ.get("TIDINGS_SMTP_SECURITY") or "auto",
                             username=os.environ.get("TIDINGS_SMTP_USER") or None,
                             password=os.environ.get("TIDINGS_SMTP_PASSWORD") or None,
                             ca_file=os.environ.get("TIDINGS_SMTP_CA_FILE") or None)


def _relay_env(args: argparse.Namespace) -> dict[str, str]:
    """The relay options as the environment `_relay_from_env` reads (every worker builds its own)."""
    if not args.smtp_relay:
        return {}
    env = {"TIDINGS_SMTP_RELAY": args.smtp_relay, "TIDINGS_SMTP_SECURITY": args.smtp_security}
    if args.smtp_user:
        env["TIDINGS_SMTP_USER"] = args.smtp_user
    if args.smtp_password_file:
        try:
            with open(args.smtp_password_file) as f:
                env["TIDINGS_SMTP_PASSWORD"] = f.readline().rstrip("\r\n")
        except OSError as exc:
            raise CliError(f"cannot read --smtp-password-file: {exc.strerror or exc}") from exc
    elif os.environ.get("TIDINGS_SMTP_PASSWORD"):
        env["TIDINGS_SMTP_PASSWORD"] = os.environ["TIDINGS_SMTP_PASSWORD"]
    if args.smtp_ca_file:
        if not os.path.isfile(args.smtp_ca_file):
            raise CliError(f"{args.smtp_ca_file}: no such file")
        env["TIDINGS_SMTP_CA_FILE"] = os.path.abspath(args.smtp_ca_file)
    try:
        from app.submission.relay import RelayConfig

        RelayConfig.parse(args.smtp_relay)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    return env


def app_from_env():
    """App factory for `--workers N` (uvicorn imports it in each worker process): the configuration
    comes from the environment that `tidings serve` set."""
    from app.server import create_app

    _configure_logging(os.environ.get("TIDINGS_LOG_LEVEL") or "info", os.environ.get("TIDINGS_LOG_FORMAT") or "text")
    return create_app(_env_config())


def _configure_logging(level: str, fmt: str = "text") -> None:
    from app.logs import configure

    configure(level, fmt)


def _metrics_dir(data: str, port: int) -> str:
    """An empty directory for the metrics of several workers, set in $PROMETHEUS_MULTIPROC_DIR (see
    app.metrics): the operator's, else one in /dev/shm named after the data directory and port,
    else DATA/metrics/PORT.  prometheus-client keeps the values in memory-mapped files: on a disk
    that fills up, a write to such a page kills the process (SIGBUS), so they stay off the data
    disk when they can.  Emptied, since values of an earlier run would be added to this one's
    (uvicorn ends its process by the signal it got, so no clean-up code runs at exit).  Here and
    not in app.metrics, because prometheus-client must not be imported before the variable is
    set.  One worker needs none of this: its own registry is in memory."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        tag = hashlib.sha256(os.path.abspath(data).encode()).hexdigest()[:12]
        shm = "/dev/shm"
        path = (os.path.join(shm, f"tidings-metrics-{os.getuid()}-{tag}-{port}")
                if os.path.isdir(shm) and os.access(shm, os.W_OK) else os.path.join(data, "metrics", str(port)))
    try:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
    except OSError as exc:
        raise CliError(f"cannot prepare the metrics directory {path}: {exc.strerror or exc}") from exc
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def ensure_demo(data: str) -> str | None:
    """Creates the user `demo` if missing; returns the password if it must be shown (random one)."""
    from app.auth import hash_password, verify_password

    store = _open(data, create=True)
    try:
        wanted = os.environ.get("TIDINGS_DEMO_PASSWORD") or None
        user = store.user("demo")
        if user is None:
            password = wanted or secrets.token_urlsafe(12)
            store.create_user("demo", hash_password(password), "demo@localhost")
            if wanted:
                print("created demo user: demo (password from TIDINGS_DEMO_PASSWORD)", file=sys.stderr)
                return None
            return password
        if wanted and not verify_password(user["passwordHash"], wanted):
            store.set_password_hash("demo", hash_password(wanted))
            print("demo user: password set from TIDINGS_DEMO_PASSWORD", file=sys.stderr)
        else:
            print("demo user: demo (exists; password unchanged)", file=sys.stderr)
        return None
    finally:
        store.close()  # one LMDB environment per process: the server opens its own


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    data = os.path.abspath(_data_dir(args))
    if bool(args.tls_cert) != bool(args.tls_key):
        raise CliError("--tls-cert and --tls-key go together")
    for f in (args.tls_cert, args.tls_key):
        if f and not os.path.isfile(f):
            raise CliError(f"{f}: no such file")
    if not 0 < args.port < 65536:
        raise CliError(f"bad port {args.port}")
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.lmtp_port is not None and not 0 < args.lmtp_port < 65536:
        raise CliError(f"bad LMTP port {args.lmtp_port}")
    if not (args.header_timeout >= 0 and args.body_timeout >= 0 and args.send_timeout >= 0):
        raise CliError("--header-timeout, --body-timeout and --send-timeout must be 0 or more seconds")
    try:
        os.makedirs(data, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create the data directory {data}: {exc.strerror or exc}") from exc
    _configure_logging(args.log_level, args.log_format)
    if args.demo:
        password = ensure_demo(data)
        if password:
            line = "=" * 64
            print(f"{line}\n  demo account created:  user demo   password {password}\n"
                  f"  (shown only this once; set TIDINGS_DEMO_PASSWORD to choose it)\n{line}",
                  file=sys.stderr, flush=True)
    tls = bool(args.tls_cert)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"{'https' if tls else 'http'}://{shown}:{args.port}"
    # uvicorn's access log and proxy headers are replaced by app.accesslog and app.proxy (which
    # also knows X-Forwarded-Host); log_config None: the handler of app.logs formats uvicorn's lines too
    options = dict(host=args.host, port=args.port, log_level=args.log_level, log_config=None,
                   access_log=False, proxy_headers=False, server_header=False,
                   ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                   http="app.shutdown:HttpProtocol", ws="app.shutdown:WebSocketProtocol", ws_per_message_deflate=False, loop=_available("uvloop", "auto"))
    env = {"TIDINGS_DATA": data, "TIDINGS_SEARCH_ENGINE": args.search_engine,
           "TIDINGS_LOG_LEVEL": args.log_level, "TIDINGS_LOG_FORMAT": args.log_format,
           "TIDINGS_ACCESS_LOG": "0" if args.no_access_log else "1",
           "TIDINGS_FORWARDED_ALLOW_IPS": args.forwarded_allow_ips, "TIDINGS_METRICS": args.metrics,
           "TIDINGS_HEADER_TIMEOUT": str(args.header_timeout), "TIDINGS_BODY_TIMEOUT": str(args.body_timeout),
           "TIDINGS_SEND_TIMEOUT": str(args.send_timeout)}
    if args.public_url:
        env["TIDINGS_PUBLIC_URL"] = args.public_url
    if args.push_allow_http:
        env["TIDINGS_PUSH_ALLOW_HTTP"] = "1"
    env.update(_relay_env(args))
    # set either way: a TIDINGS_LMTP_PORT left in the environment does not start a listener
    env["TIDINGS_LMTP_PORT"] = str(args.lmtp_port) if args.lmtp_port is not None else ""
    env["TIDINGS_LMTP_HOST"] = args.lmtp_host
    lmtp = f", LMTP on {args.lmtp_host}:{args.lmtp_port}" if args.lmtp_port is not None else ""
    _check_port_free(args.host, args.port)
    import logging

    # through the log, so that --log-format json gives JSON from the first line on
    logging.getLogger("tidings").info("tidings %s: JMAP session at %s/.well-known/jmap (data: %s, workers: %d%s)",
                                      version(), url, data, args.workers, lmtp)
    os.environ.update(env)
    _limit_malloc_arenas()
    if args.workers > 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _metrics_dir(data, args.port)  # before app.server (and so prometheus-client) is imported
    if args.workers > 1:
        uvicorn.run("app.cli:app_from_env", factory=True, workers=args.workers, **options)
        return 0
    from app.server import create_app

    try:
        app = create_app(_env_config())
    except Exception as exc:
        raise CliError(f"cannot start: {type(exc).__name__}: {exc}") from exc
    uvicorn.run(app, **options)
    return 0


def _check_port_free(host: str, port: int) -> None:
    """A port another program listens on is one clear error before anything starts (uvicorn would
    start the application, then fail with its own exit status)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}: {exc.strerror or exc}") from exc
    for family, kind, proto, _, address in infos[:1]:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                s.bind(address)
            except OSError as exc:
                raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads that allocate at the same time arenas of their own, up to eight per
    core; the request thread pool then leaves memory spread over them that is never given back
    (a 30 s load test of 16 users: 167 MiB of private memory, 70 MiB with two arenas, at the same
    speed).  For this process through mallopt(M_ARENA_MAX), for worker processes through the
    environment that glibc reads when they start.  An operator's MALLOC_ARENA_MAX wins."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc
        pass


def _available(module: str, fallback: str) -> str:
    import importlib.util

    return module if importlib.util.find_spec(module) is not None else fallback


# --------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    sub_command = getattr(args, "user_command", None) or getattr(args, "token_command", None)
    prog = "tidings " + args.command + (f" {sub_command}" if sub_command else "")
    try:
        return args.func(args)
    except CliError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # anything unforeseen still gets one line, not a traceback
        if os.environ.get("TIDINGS_DEBUG"):
            raise
        print(f"{prog}: error: {type(exc).__name__}: {exc} (set TIDINGS_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
