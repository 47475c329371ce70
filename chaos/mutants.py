"""`python -m chaos.mutants` (`./dev mutants`): remove each guard in turn and run the tests that pin it.

A guard is a condition the guarantees rest on: a `ConditionExpression`, a token compare, the idempotency
hash compare, the relay's status fence, the shard lease's conditions and its check in every transaction
the relay writes under it (inventory: ADR 0013, "Guard inventory"). Each mutant removes one guard (or the
two of one transaction) by exact text replacement inside one named function, runs the scenario tests
named for it (`tests/test_guards.py`, `tests/test_shard_leases.py`) on a copy of the working tree, and
must make one of them fail on an assertion. The check fails (exit 1) on a survivor and on a mutant that
broke its tests only by an exception (that proves nothing about the scenario); and (exit 2) when a
pattern is not found exactly once in its function, when a function writes a condition no mutant touches,
or when the unmutated copy does not pass: code that moved must be followed here.

Removing a condition means making it always true, `attribute_not_exists(guard_removed) OR (...)`, rather
than deleting it: every name and value it uses stays used, so DynamoDB (and moto) take the request, and the
write behaves exactly as it would with no condition. Deleting the text would leave `:ready` unused and fail
every call with a `ValidationException`, a mutant any test of the path kills without saying anything about
the guard. A part of an `OR` (the lease's expiry, a resent acquire's own holder token) is made always
false instead, which narrows the condition. A check that is an action of its own (the lease's
`ConditionCheck` in a transaction) is removed by leaving the action out.

Nothing in the working tree is modified: mutants are applied to a temporary copy (the files git lists,
as they are now), pytest runs there with the copy first on `sys.path`, and the copy's modules are checked
to be the ones imported (the venv's editable install points at the working tree).
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
GUARD_TESTS: Final = "tests/test_guards.py"
ALWAYS: Final = "attribute_not_exists(guard_removed)"
"""An attribute no item has: `ALWAYS OR (condition)` holds for every item, and where there is none."""
TEST_TIMEOUT_SECONDS: Final = 120

STORE: Final = "relay/store.py"
ADMIN: Final = "outbox/ops/admin.py"
CORE: Final = "relay/core.py"
SENDER: Final = "relay/sender.py"
INGEST: Final = "outbox/data/transactions.py"
SERVICE: Final = "outbox/ingest/service.py"
RELAY_TRANSACTIONS: Final = "relay/transactions.py"
ADMIN_TRANSACTIONS: Final = "outbox/ops/transactions.py"
LEASES: Final = "relay/leases.py"
LEASE_TESTS: Final = "tests/test_shard_leases.py"
CONSUMER: Final = "outbox/consumer/transitions.py"
CONSUMER_TESTS: Final = "tests/test_consumer.py"
DLQ: Final = "outbox/ops/dlq.py"
DLQ_TESTS: Final = "tests/test_dlq.py"


@dataclass(frozen=True, slots=True)
class Edit:
    path: str
    """Repository-relative file."""
    scope: str | None
    """`function` or `Class.method` whose source must hold `old` exactly once; None: the whole module."""
    old: str
    new: str


def removed(path: str, scope: str | None, condition: str) -> Edit:
    """The quoted condition `"condition"` made always true (see the module's docstring)."""
    return Edit(path, scope, f'"{condition}"', f'"{ALWAYS} OR ({condition})"')


def dropped(path: str, scope: str | None, text: str) -> Edit:
    """`text` (one part of an `OR`, or a compare) deleted."""
    return Edit(path, scope, text, "")


def never(path: str, scope: str | None, part: str) -> Edit:
    """One part of an `OR` made always false, its names and values still used (where `dropped` would leave
    a value no expression uses, which DynamoDB refuses)."""
    return Edit(path, scope, part, f"(attribute_exists(guard_removed) AND {part})")


def always(path: str, scope: str | None, part: str) -> Edit:
    """One part of an `AND` made always true, its names and values still used."""
    return Edit(path, scope, part, f"({ALWAYS} OR {part})")


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    guard: str
    """Which guard, in a few words (the ADR's table says what it protects against)."""
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    """Test functions of `GUARD_TESTS` (or pytest node ids, test files) that must catch it."""
    equivalent: str | None = None
    """Why no test can catch it: located (the pattern must still be there), not run."""

    def node_ids(self) -> list[str]:
        return [
            test if "::" in test or test.endswith(".py") else f"{GUARD_TESTS}::{test}" for test in self.tests
        ]


_FINALIZE_MESSAGE = removed(RELAY_TRANSACTIONS, "queue_message_action", "#status = :pending")
_FINALIZE_LEASE = Edit(
    STORE,
    "OutboxStore.finalize",
    "items: list[TransactWriteItemTypeDef] = [check]",
    "items: list[TransactWriteItemTypeDef] = []",
)
_POISON_MESSAGE = removed(RELAY_TRANSACTIONS, "fail_message_action", "#status = :pending")
_POISON_ENTRY = removed(RELAY_TRANSACTIONS, "park_entry_action", "#state = :ready")
_REQUEUE_MESSAGE = removed(ADMIN_TRANSACTIONS, "requeue_message_action", "#status = :failed")
_REQUEUE_ENTRY = removed(ADMIN_TRANSACTIONS, "reset_parked_entry_action", "#state = :parked")
_SKIP_MESSAGE = removed(ADMIN_TRANSACTIONS, "skip_message_action", "#status = :failed")
_SKIP_ENTRY = removed(ADMIN_TRANSACTIONS, "delete_parked_entry_action", "#state = :parked")

MUTANTS: Final[tuple[Mutant, ...]] = (
    # -- ingest (outbox/data/transactions.py, outbox/ingest/service.py) --
    Mutant(
        "ingest-message-is-new",
        "ingest: message Put `attribute_not_exists(#id)`",
        (removed(INGEST, "transaction_items", "attribute_not_exists(#id)"),),
        ("test_a_replay_after_delivery_changes_nothing_and_adds_no_entry",),
    ),
    Mutant(
        "ingest-entry-is-new",
        "ingest: entry Put `attribute_not_exists(#entry)`",
        (removed(INGEST, "transaction_items", "attribute_not_exists(#entry)"),),
        ("test_an_entry_id_collision_writes_nothing",),
    ),
    Mutant(
        "replay-hash-compare",
        "ingest: a replay's request hash compared with the stored one (409)",
        (Edit(SERVICE, "accept", "!= message.request_hash:", "!= message.request_hash and False:"),),
        ("test_a_replay_with_a_changed_body_is_a_409_and_changes_nothing",),
    ),
    # -- the shard's lease in the relay (relay/core.py, relay/store.py, ADR 0018) --
    Mutant(
        "relay-renew-refused",
        "relay: a refused renew stops the shard before the batch's first send",
        (
            Edit(
                CORE,
                "Relay._renew",
                'self._lost(shard, worker, "renew refused")\n            return None',
                'self._lost(shard, worker, "renew refused")',
            ),
        ),
        ("test_a_relay_whose_lease_was_taken_over_sends_nothing_more",),
    ),
    Mutant(
        "relay-post-release-read",
        "relay: after releasing, the shard is read once more (no lost wake-up)",
        (
            Edit(
                CORE,
                "Relay._drain_shard",
                "if not self.store.holds_unseen_due(",
                "if True or not self.store.holds_unseen_due(",
            ),
        ),
        ("test_an_entry_written_while_another_relay_holds_the_shard_leaves_in_the_holders_invocation",),
    ),
    Mutant(
        "finalize-lease-check",
        "finalize: the lease's `ConditionCheck` (action 0)",
        (_FINALIZE_LEASE,),
        ("test_a_stale_finalize_after_a_requeue_changes_nothing",),
    ),
    Mutant(
        "fenced-lease-check",
        "rollback, poison and entry deletes: the lease's `ConditionCheck` (action 0)",
        (Edit(STORE, "OutboxStore._fenced", "self._transact([check, *items])", "self._transact([*items])"),),
        (
            "test_a_rollback_or_poison_by_a_relay_that_lost_its_lease_writes_nothing",
            "test_a_stale_finalize_after_another_relay_poisoned_changes_nothing",
        ),
    ),
    # -- the relay's status fence (relay/core.py) --
    Mutant(
        "load-status-fence",
        "relay: a fetched message not PENDING is not sent",
        (Edit(CORE, "Relay._load", 'item["status"]["S"] != Status.PENDING', "False"),),
        ("test_an_entry_whose_message_moved_on_before_the_load_is_dropped_unsent",),
    ),
    # -- the lease as a fence on sending (relay/sender.py) --
    Mutant(
        "send-lease-fence",
        "send: no call starts once the lease's send window has closed",
        (Edit(SENDER, "Sender._send_batch", "if deadline() <= 0:", "if False:"),),
        ("test_a_relay_stalled_past_its_lease_before_the_send_sends_nothing",),
    ),
    Mutant(
        "send-retry-lease-fence",
        "send: no retry starts once the lease's send window has closed",
        (
            Edit(
                SENDER,
                "Sender._before_retry",
                "deadline() <= 0",
                "False",
            ),
        ),
        ("test_a_send_retry_never_starts_past_the_lease",),
    ),
    # -- finalize --
    Mutant(
        "finalize-message-pending",
        "finalize: message `#status = :pending`",
        (_FINALIZE_MESSAGE,),
        ("test_a_message_moved_on_during_the_send_is_not_flipped_back",),
    ),
    Mutant(
        "finalize-both",
        "finalize: message `#status = :pending` and the lease's check",
        (_FINALIZE_MESSAGE, _FINALIZE_LEASE),
        ("test_a_stale_finalize_after_another_relay_poisoned_changes_nothing",),
    ),
    # -- rollback --
    Mutant(
        "rollback-entry-ready",
        "rollback: entry `#state = :ready` (never a half entry)",
        (removed(RELAY_TRANSACTIONS, "roll_back_entry_action", "#state = :ready"),),
        ("test_a_rollback_or_poison_after_an_older_relay_finalized_creates_no_entry",),
    ),
    # -- poison --
    Mutant(
        "poison-message-pending",
        "poison: message `#status = :pending`",
        (_POISON_MESSAGE,),
        ("test_a_poison_never_fails_a_message_moved_on_by_someone_else",),
    ),
    Mutant(
        "poison-entry-ready",
        "poison: entry `#state = :ready` (never a half parked entry)",
        (_POISON_ENTRY,),
        ("test_a_poison_of_an_entry_removed_by_hand_writes_nothing",),
    ),
    Mutant(
        "poison-both",
        "poison: both conditions",
        (_POISON_MESSAGE, _POISON_ENTRY),
        ("test_a_rollback_or_poison_after_an_older_relay_finalized_creates_no_entry",),
    ),
    # -- requeue and skip (outbox/ops/admin.py) --
    Mutant(
        "requeue-message-failed",
        "requeue: message `#status = :failed`",
        (_REQUEUE_MESSAGE,),
        ("test_a_second_requeue_after_the_message_was_delivered_is_refused",),
    ),
    Mutant(
        "requeue-entry-parked",
        "requeue: entry `#state = :parked`",
        (_REQUEUE_ENTRY,),
        ("test_a_requeue_racing_a_skip_is_refused",),
    ),
    Mutant(
        "requeue-both",
        "requeue: both conditions",
        (_REQUEUE_MESSAGE, _REQUEUE_ENTRY),
        ("test_a_requeue_racing_another_requeue_and_the_relays_delivery_is_refused",),
    ),
    Mutant(
        "ttl-clear-status",
        "clear_owed_ttl: `#status = :status` (the status its scan read)",
        (
            Edit(
                ADMIN,
                "clear_owed_ttl",
                '"#status = :status AND attribute_not_exists(skipped_at)"',
                f'"({ALWAYS} OR #status = :status) AND attribute_not_exists(skipped_at)"',
            ),
        ),
        ("test_clearing_owed_ttl_keeps_the_ttl_of_a_message_finalized_meanwhile",),
    ),
    Mutant(
        "ttl-clear-not-skipped",
        "clear_owed_ttl: `attribute_not_exists(skipped_at)`",
        (
            Edit(
                ADMIN,
                "clear_owed_ttl",
                '"#status = :status AND attribute_not_exists(skipped_at)"',
                f'"#status = :status AND ({ALWAYS} OR attribute_not_exists(skipped_at))"',
            ),
        ),
        ("test_clearing_owed_ttl_keeps_the_ttl_of_a_message_skipped_meanwhile",),
    ),
    Mutant(
        "skip-message-failed",
        "skip: message `#status = :failed`",
        (_SKIP_MESSAGE,),
        ("test_a_skip_of_a_message_deleted_meanwhile_writes_nothing",),
    ),
    Mutant(
        "skip-entry-parked",
        "skip: entry delete `#state = :parked`",
        (_SKIP_ENTRY,),
        ("test_two_skips_at_once_the_second_is_refused",),
    ),
    Mutant(
        "skip-orphan-message-id",
        "skip of an orphaned parked entry: `message_id = :message_id`",
        (
            Edit(
                ADMIN_TRANSACTIONS,
                "delete_parked_entry_action",
                '" AND message_id = :message_id"',
                f'" AND ({ALWAYS} OR message_id = :message_id)"',
            ),
        ),
        (),
        equivalent=(
            "an entry key is never reused for another message (every entry id is a new UUIDv7), so the "
            "key `skip` found by message id holds that message's entry or none; `#state = :parked` decides"
        ),
    ),
    Mutant(
        "skip-both",
        "skip: both conditions",
        (_SKIP_MESSAGE, _SKIP_ENTRY),
        ("test_a_skip_racing_a_requeue_and_a_relay_is_refused",),
    ),
    # -- the consumer helper (outbox/consumer/transitions.py, ADR 0019) --
    Mutant(
        "consume-claim",
        "consumer claim: PENDING or QUEUED, or a PROCESSING claim that ran out",
        (
            removed(
                CONSUMER,
                "claim_update",
                "#status IN (:pending, :queued, :dead) OR "
                "(#status = :processing AND processing_until < :now_ms)",
            ),
        ),
        (f"{CONSUMER_TESTS}::test_a_redelivered_completed_message_is_acknowledged_without_running_again",),
    ),
    Mutant(
        "consume-claim-expiry",
        "consumer claim: `processing_until < :now_ms` (a live claim elsewhere is left alone)",
        (always(CONSUMER, "claim_update", "processing_until < :now_ms"),),
        (f"{CONSUMER_TESTS}::test_a_message_another_consumer_is_working_on_is_retried_later_not_run_twice",),
    ),
    Mutant(
        "consume-claim-takeover",
        "consumer claim: a PROCESSING claim that ran out may be taken over",
        (never(CONSUMER, "claim_update", "(#status = :processing AND processing_until < :now_ms)"),),
        (
            f"{CONSUMER_TESTS}::test_a_claim_that_ran_out_is_taken_over_and_the_first_consumer_commits_nothing",
        ),
    ),
    Mutant(
        "consume-complete-token",
        "consumer complete: `processing_token = :token`",
        (always(CONSUMER, "complete_action", "processing_token = :token"),),
        (f"{CONSUMER_TESTS}::test_a_stalled_consumer_cannot_complete_while_another_holds_the_message",),
    ),
    Mutant(
        "consume-complete-processing",
        "consumer complete: `#status = :processing`",
        (always(CONSUMER, "complete_action", "#status = :processing"),),
        (
            f"{CONSUMER_TESTS}::test_a_claim_that_ran_out_is_taken_over_and_the_first_consumer_commits_nothing",
        ),
        equivalent=(
            "only a claim writes `processing_token`, and every move out of PROCESSING removes it, so a "
            "matching token implies PROCESSING; the status compare states the transition"
        ),
    ),
    Mutant(
        "consume-give-back-token",
        "consumer give back: `processing_token = :token`",
        (always(CONSUMER, "give_back_update", "processing_token = :token"),),
        (
            f"{CONSUMER_TESTS}::test_a_failure_after_the_claim_was_taken_over_leaves_the_new_holders_claim_alone",
        ),
    ),
    Mutant(
        "consume-give-back-processing",
        "consumer give back: `#status = :processing`",
        (always(CONSUMER, "give_back_update", "#status = :processing"),),
        (
            f"{CONSUMER_TESTS}::test_a_failure_after_the_claim_was_taken_over_leaves_the_new_holders_claim_alone",
        ),
        equivalent="as for `consume-complete-processing`: the token is only there while PROCESSING",
    ),
    # -- the dead-letter queue (outbox/ops/dlq.py, ADR 0020) --
    Mutant(
        "dlq-mark-status",
        "dlq list: DEAD_LETTERED only over the status read",
        (removed(DLQ, "_mark_dead_lettered", "#status = :read"),),
        (f"{DLQ_TESTS}::test_listing_never_marks_a_message_completed_meanwhile",),
    ),
    Mutant(
        "dlq-redrive-status",
        "dlq redrive: PENDING only over the status read",
        (removed(DLQ, "_redrive_message_action", "#status = :read"),),
        (f"{DLQ_TESTS}::test_a_redrive_of_a_message_that_moved_on_meanwhile_writes_nothing",),
    ),
    # -- fenced shard leases (relay/leases.py, ADR 0018) --
    Mutant(
        "lease-acquire-free",
        "lease acquire: the whole condition (free, released, expired or ours)",
        (
            removed(
                LEASES,
                "ShardLeases.acquire",
                "attribute_not_exists(holder) OR released = :true OR lease_until < :now OR holder = :me",
            ),
        ),
        (f"{LEASE_TESTS}::test_a_held_lease_is_refused_to_another_relay",),
    ),
    Mutant(
        "lease-acquire-expiry",
        "lease acquire: `lease_until < :now` (a dead holder's lease ends)",
        (never(LEASES, "ShardLeases.acquire", "lease_until < :now"),),
        (f"{LEASE_TESTS}::test_an_expired_lease_is_taken_over_with_the_watermark_its_holder_left",),
    ),
    Mutant(
        "lease-acquire-released",
        "lease acquire: `released = :true` (a released shard is free at once)",
        (never(LEASES, "ShardLeases.acquire", "released = :true"),),
        (f"{LEASE_TESTS}::test_a_released_lease_is_taken_at_once_and_leaves_no_watermark",),
    ),
    Mutant(
        "lease-acquire-own",
        "lease acquire: `holder = :me` (a resent acquire is ours)",
        (
            Edit(
                LEASES,
                "ShardLeases.acquire",
                "OR holder = :me",
                "OR (attribute_exists(guard_removed) AND holder = :me)",
            ),
        ),
        (f"{LEASE_TESTS}::test_a_resent_acquire_is_still_ours",),
    ),
    Mutant(
        "lease-renew-fence",
        "lease renew: `fence = :fence`",
        (always(LEASES, "ShardLeases.renew", "fence = :fence"),),
        (f"{LEASE_TESTS}::test_a_holder_resent_its_own_old_fence_cannot_finalize",),
    ),
    Mutant(
        "lease-renew-holder",
        "lease renew: `holder = :me`",
        (always(LEASES, "ShardLeases.renew", "holder = :me"),),
        (f"{LEASE_TESTS}::test_a_taken_over_holder_can_neither_renew_nor_finalize",),
        equivalent=(
            "another holder's acquisition raised the fence, so `fence = :fence` refuses the renew of every "
            "earlier acquisition whatever its holder; the holder compare is kept for readability"
        ),
    ),
    Mutant(
        "lease-renew-released",
        "lease renew: `attribute_not_exists(released)`",
        (always(LEASES, "ShardLeases.renew", "attribute_not_exists(released)"),),
        (f"{LEASE_TESTS}::test_a_released_lease_cannot_finalize_or_renew",),
    ),
    Mutant(
        "lease-release-fence",
        "lease release: `holder = :me AND fence = :fence`",
        (removed(LEASES, "ShardLeases.release", "holder = :me AND fence = :fence"),),
        (f"{LEASE_TESTS}::test_a_release_by_a_taken_over_holder_changes_nothing",),
    ),
    Mutant(
        "lease-check",
        "finalize's lease check: the whole condition",
        (
            removed(
                LEASES,
                "ShardLeases.check_action",
                "holder = :me AND fence = :fence AND attribute_not_exists(released)",
            ),
        ),
        (f"{LEASE_TESTS}::test_a_taken_over_holder_can_neither_renew_nor_finalize",),
    ),
    Mutant(
        "lease-check-fence",
        "finalize's lease check: `fence = :fence`",
        (always(LEASES, "ShardLeases.check_action", "fence = :fence"),),
        (f"{LEASE_TESTS}::test_a_holder_resent_its_own_old_fence_cannot_finalize",),
    ),
    Mutant(
        "lease-check-released",
        "finalize's lease check: `attribute_not_exists(released)`",
        (always(LEASES, "ShardLeases.check_action", "attribute_not_exists(released)"),),
        (f"{LEASE_TESTS}::test_a_released_lease_cannot_finalize_or_renew",),
    ),
)


# -- locating and applying ----------------------------------------------------------------------------


class NotFound(Exception):
    pass


def _scope_span(source: str, scope: str | None, path: str) -> tuple[int, int]:
    """Character offsets of a function's source (decorators excluded), or of the whole module."""
    if scope is None:
        return 0, len(source)
    body: list[ast.stmt] = ast.parse(source).body
    node: ast.stmt | None = None
    for part in scope.split("."):
        node = next(
            (
                child
                for child in body
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and child.name == part
            ),
            None,
        )
        if node is None:
            raise NotFound(f"{path}: no {scope}")
        body = node.body
    if node is None or node.end_lineno is None:
        raise NotFound(f"{path}: no {scope}")
    lines = source.splitlines(keepends=True)
    start = sum(len(line) for line in lines[: node.lineno - 1])
    end = sum(len(line) for line in lines[: node.end_lineno])
    return start, end


def apply(edit: Edit, source: str) -> str:
    start, end = _scope_span(source, edit.scope, edit.path)
    count = source.count(edit.old, start, end)
    if count != 1:
        where = edit.scope or "the module"
        raise NotFound(f"{edit.path}: {edit.old!r} found {count} times in {where}, not once")
    at = source.index(edit.old, start, end)
    return source[:at] + edit.new + source[at + len(edit.old) :]


def mutate(root: Path, mutant: Mutant) -> dict[Path, str]:
    """The mutated text of each file the mutant touches (edits of one file apply in turn)."""
    texts: dict[Path, str] = {}
    for edit in mutant.edits:
        path = root / edit.path
        texts[path] = apply(edit, texts.get(path) or path.read_text(encoding="utf-8"))
    return texts


# -- the copy and the runs ------------------------------------------------------------------------------


def copy_tree(target: Path) -> None:
    """The files git lists (tracked and untracked, not ignored), as they are in the working tree now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607 - git from PATH
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant and the original may share size and mtime second
    return env


def check_imports(root: Path) -> None:
    """The copy's packages are the ones imported, not the working tree's (the editable install)."""
    probe = "import outbox, relay; print(outbox.__file__); print(relay.__file__)"
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", probe],
        cwd=root,
        env=_environment(root),
        capture_output=True,
        text=True,
        check=True,
    )
    for line in result.stdout.split():
        if not Path(line).resolve().is_relative_to(root.resolve()):
            raise NotFound(f"the copy imports {line}, not its own modules")


class Verdict(StrEnum):
    KILLED = "killed"
    SURVIVED = "SURVIVED"
    CRASHED = "CRASHED"
    """Tests failed, but only on exceptions: the mutant broke the call, not the scenario."""
    EQUIVALENT = "equivalent"


@dataclass
class Outcome:
    mutant: Mutant
    verdict: Verdict
    seconds: float = 0.0
    caught_by: list[str] = field(default_factory=list)
    detail: str = ""


_ASSERTION_FAILURES: Final = ("AssertionError", "assert ", "Failed: DID NOT RAISE", "Failed: Regex pattern")


def run_tests(root: Path, node_ids: Sequence[str]) -> tuple[int, dict[str, str], str]:
    """pytest on `node_ids` in `root`: exit code, {test: failure message} and the output's tail."""
    with tempfile.TemporaryDirectory(prefix="mutant-report-") as reports:
        junit = Path(reports) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            f"--timeout={TEST_TIMEOUT_SECONDS}",
            *node_ids,
        ]
        result = subprocess.run(  # noqa: S603 - our own interpreter and node ids
            command, cwd=root, env=_environment(root), capture_output=True, text=True, check=False
        )
        failures: dict[str, str] = {}
        if junit.exists():
            for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 - pytest's own report
                for problem in (*case.findall("failure"), *case.findall("error")):
                    failures[case.get("name", "?")] = problem.get("message", "")
    return result.returncode, failures, "\n".join(result.stdout.splitlines()[-15:])


def judge(root: Path, mutant: Mutant) -> Outcome:
    if mutant.equivalent is not None:
        return Outcome(mutant, Verdict.EQUIVALENT, detail=mutant.equivalent)
    started = time.monotonic()
    originals = {path: path.read_text(encoding="utf-8") for path in (root / e.path for e in mutant.edits)}
    try:
        for path, text in mutate(root, mutant).items():
            path.write_text(text, encoding="utf-8")
        code, failures, tail = run_tests(root, mutant.node_ids())
    finally:
        for path, text in originals.items():
            path.write_text(text, encoding="utf-8")
    seconds = time.monotonic() - started
    asserted = sorted(name for name, message in failures.items() if message.startswith(_ASSERTION_FAILURES))
    if asserted:
        return Outcome(mutant, Verdict.KILLED, seconds, asserted)
    if code == 0:
        return Outcome(mutant, Verdict.SURVIVED, seconds)
    detail = "; ".join(f"{name}: {message[:160]}" for name, message in failures.items()) or tail
    return Outcome(mutant, Verdict.CRASHED, seconds, detail=detail)


@contextmanager
def copies(count: int) -> Iterator[list[Path]]:
    with tempfile.TemporaryDirectory(prefix="outbox-mutants-") as base:
        roots = [Path(base) / f"tree-{index}" for index in range(count)]
        for root in roots:
            root.mkdir()
            copy_tree(root)
        yield roots


# -- the command ----------------------------------------------------------------------------------------


CONDITION_MODULES: Final = ("outbox", "relay")
"""Where conditional writes of the product live (`outbox/local` and `outbox/testing` are the emulator and
test tooling: not scanned)."""
NOT_SCANNED: Final = ("outbox/local/", "outbox/testing/")
CONDITIONS_HELD_ELSEWHERE: Final = {
    (LEASES, "ShardLeases._fenced_update"): "`ShardLeases.renew` and `ShardLeases.release` pass it theirs",
}
"""Functions that send a condition written somewhere else, and where (that place has the mutants)."""


def _conditional_writes(path: Path) -> set[str]:
    """Qualified names of the functions in `path` that send a `ConditionExpression` (a dict key or a
    keyword argument) or build a `ConditionCheck` action."""
    found: set[str] = set()

    def visit(node: ast.AST, scope: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = f"{scope}.{child.name}" if scope else child.name
            is_condition = (
                isinstance(child, ast.Dict)
                and any(
                    isinstance(key, ast.Constant) and key.value in {"ConditionExpression", "ConditionCheck"}
                    for key in child.keys
                )
            ) or (isinstance(child, ast.keyword) and child.arg == "ConditionExpression")
            if is_condition and scope is not None:
                found.add(scope)
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8")), None)
    return found


def uninventoried(mutants: Sequence[Mutant]) -> list[str]:
    """Conditional writes in the product that no mutant touches: a guard added without its entry here."""
    covered = {(edit.path, edit.scope) for mutant in mutants for edit in mutant.edits}
    problems: list[str] = []
    for package in CONDITION_MODULES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name.startswith(NOT_SCANNED):
                continue
            for scope in sorted(_conditional_writes(path)):
                if (name, scope) not in covered and (name, scope) not in CONDITIONS_HELD_ELSEWHERE:
                    problems.append(f"{name}: {scope} writes a condition that no mutant removes")
    return problems


def locate(mutants: Sequence[Mutant]) -> list[str]:
    """Every pattern, in the working tree: the problems found (empty when each is there exactly once)."""
    problems: list[str] = []
    for mutant in mutants:
        try:
            mutate(ROOT, mutant)
        except (NotFound, OSError, SyntaxError) as exc:
            problems.append(f"{mutant.name}: {exc}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="only these mutants (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests, run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once, each in its own copy")
    args = parser.parse_args(argv)

    unknown = set(args.names) - {mutant.name for mutant in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    chosen = [mutant for mutant in MUTANTS if not args.names or mutant.name in args.names]
    if args.list:
        for mutant in chosen:
            mark = " (equivalent: not run)" if mutant.equivalent else ""
            print(f"{mutant.name}{mark}: {mutant.guard}")
            for node_id in mutant.node_ids():
                print(f"    {node_id}")
        return 0

    started = time.monotonic()
    problems = locate(chosen) + uninventoried(MUTANTS)
    for problem in problems:
        print(f"NOT FOUND {problem}")
    if problems:
        print(f"{len(problems)} problem(s): update chaos/mutants.py, tests/test_guards.py and ADR 0013")
        return 2
    runnable = [mutant for mutant in chosen if mutant.equivalent is None]
    baseline_tests = sorted({node_id for mutant in chosen for node_id in mutant.node_ids()})
    with copies(max(1, min(args.jobs, len(runnable)))) as roots:
        check_imports(roots[0])
        code, failures, tail = run_tests(roots[0], baseline_tests)
        if code != 0:
            print(f"the unmutated copy fails its tests (exit {code}): {sorted(failures) or ''}\n{tail}")
            return 2
        seconds = time.monotonic() - started
        print(f"baseline: {len(baseline_tests)} tests pass on the unmutated copy ({seconds:.1f} s)")

        free = list(roots)

        def judge_in_a_copy(mutant: Mutant) -> Outcome:
            root = free.pop()
            try:
                return judge(root, mutant)
            finally:
                free.append(root)

        with ThreadPoolExecutor(max_workers=len(roots)) as pool:
            outcomes = list(pool.map(judge_in_a_copy, chosen))

    width = max(len(mutant.name) for mutant in chosen)
    for outcome in outcomes:
        line = f"{outcome.verdict.value:<10} {outcome.mutant.name:<{width}}  {outcome.mutant.guard}"
        if outcome.verdict is Verdict.KILLED:
            line += f"\n{'':<11}{'':<{width}}  by {', '.join(outcome.caught_by)} ({outcome.seconds:.1f} s)"
        elif outcome.detail:
            line += f"\n{'':<11}{'':<{width}}  {outcome.detail}"
        print(line)
    counts = {verdict: sum(o.verdict is verdict for o in outcomes) for verdict in Verdict}
    print(
        f"{counts[Verdict.KILLED]} killed, {counts[Verdict.SURVIVED]} survived, "
        f"{counts[Verdict.CRASHED]} crashed, {counts[Verdict.EQUIVALENT]} equivalent (located, not run); "
        f"{time.monotonic() - started:.0f} s"
    )
    return 0 if counts[Verdict.SURVIVED] == counts[Verdict.CRASHED] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
