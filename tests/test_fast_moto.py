"""The fast-transaction patch for moto (outbox/local/fast_moto.py, ADR 0011) behaves exactly like moto.

The equivalence test runs seeded random sequences of transactions against moto as shipped and against
the patched moto, and compares every response and error, the final items, the stream records and moto's
internal item layout (dict order and hash buckets included). The other tests pin the semantics that matter
to the relay on both: a cancelled transaction changes nothing, validation errors still happen.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import boto3
import moto.dynamodb.models as moto_models
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.table import Table

from outbox.local.emulator import EmbeddedAws
from outbox.local.fast_moto import (
    MOTO_FINGERPRINTS,
    MotoInternalsChanged,
    check_moto_internals,
    fast_transactions,
    fast_transactions_installed,
    install_fast_transactions,
    uninstall_fast_transactions,
)

REGION = "us-east-1"
HASH_TABLE = "fm-hash"  # pk (S)
RANGE_TABLE = "fm-range"  # pk (S) + sk (N), a GSI on g, a NEW_AND_OLD_IMAGES stream
MISSING_TABLE = "fm-missing"
HASH_KEYS = [f"k{i}" for i in range(40)]
RANGE_KEYS = [(f"p{p}", s) for p in range(6) for s in range(8)]  # p5 is never seeded: no hash bucket

Action = dict[str, Any]


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture
def moto_as_shipped() -> Iterator[None]:
    """moto's own transact_write_items for the test, whatever was installed before it."""
    was_installed = fast_transactions_installed()
    uninstall_fast_transactions()
    yield
    if was_installed:
        install_fast_transactions()


@pytest.fixture(params=["moto", "fast"])
def mode(request: pytest.FixtureRequest, moto_as_shipped: None) -> Iterator[str]:
    """Run the test against moto as shipped and against the patched moto: same expectations for both."""
    if request.param == "fast":
        with fast_transactions():
            yield request.param
    else:
        yield request.param


def _client(endpoint_url: str | None = None) -> Any:
    return boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint_url)


def _create_tables(client: Any, prefix: str = "") -> None:
    client.create_table(
        TableName=prefix + HASH_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.create_table(
        TableName=prefix + RANGE_TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        BillingMode="PAY_PER_REQUEST",
    )


def _key(table: str, key: Any) -> dict[str, Any]:
    if table.endswith(RANGE_TABLE):
        pk, sk = key
        return {"pk": {"S": pk}, "sk": {"N": str(sk)}}
    return {"pk": {"S": key}}


def _seed(client: Any, prefix: str = "") -> None:
    for i, key in enumerate(HASH_KEYS[:30]):
        client.put_item(TableName=prefix + HASH_TABLE, Item={**_key(HASH_TABLE, key), "v": {"N": str(i)}})
    for i, key in enumerate(k for k in RANGE_KEYS if k[0] != "p5" and k[1] % 3 != 2):
        item = {**_key(RANGE_TABLE, key), "v": {"N": str(i)}, "g": {"S": f"g{i % 3}"}}
        client.put_item(TableName=prefix + RANGE_TABLE, Item=item)


def _outcome(client: Any, actions: list[Action]) -> dict[str, Any] | None:
    """None on success; otherwise the error and the cancellation reasons, as the caller sees them."""
    try:
        client.transact_write_items(TransactItems=actions)
    except ClientError as error:
        return {"Error": error.response["Error"], "Reasons": error.response.get("CancellationReasons")}
    return None


def _scan(client: Any, table: str, **options: Any) -> list[dict[str, Any]]:
    paginator = client.get_paginator("scan")
    return [item for page in paginator.paginate(TableName=table, **options) for item in page["Items"]]


def _layout(table_name: str) -> list[Any]:
    """moto's in-memory items in dict order, hash buckets (empty ones too) included."""
    table: Table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables[table_name]
    if table.range_key_attr is None:
        return [(repr(h), item.to_json()) for h, item in table.items.items()]
    return [
        (repr(h), [(repr(r), item.to_json()) for r, item in bucket.items()])
        for h, bucket in table.items.items()
    ]


def _stream_records(table_name: str) -> list[dict[str, Any]]:
    """The table's stream records without the fields that differ per run: a random id, a timestamp, and
    SizeBytes (the length of the record's JSON, timestamp included)."""
    table: Table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables[table_name]
    assert table.stream_shard is not None
    records = []
    for record in table.stream_shard.items:
        data = copy.deepcopy(record.to_json())
        del data["eventID"], data["dynamodb"]["ApproximateCreationDateTime"], data["dynamodb"]["SizeBytes"]
        records.append(data)
    return records


def _state(client: Any) -> dict[str, Any]:
    return {
        "hash": _scan(client, HASH_TABLE),
        "range": _scan(client, RANGE_TABLE),
        "gsi": _scan(client, RANGE_TABLE, IndexName="by-g"),
        "layout": (_layout(HASH_TABLE), _layout(RANGE_TABLE)),
        "stream": _stream_records(RANGE_TABLE),
        "counts": [
            client.describe_table(TableName=t)["Table"]["ItemCount"] for t in (HASH_TABLE, RANGE_TABLE)
        ],
    }


# --- a random transaction generator -------------------------------------------------------------------------

CONDITIONS: list[tuple[str, dict[str, Any]]] = [
    ("attribute_exists(pk)", {}),
    ("attribute_not_exists(pk)", {}),
    ("v < :lim", {":lim": {"N": "20"}}),
    ("attribute_exists(pk) AND v >= :lim", {":lim": {"N": "10"}}),
]


def _random_action(rng: random.Random, table: str, key: Any) -> Action:
    kind = rng.choice(["Put", "Update", "Delete", "ConditionCheck"])
    op: dict[str, Any] = {"TableName": table}
    values: dict[str, Any] = {}
    if kind == "Put":
        op["Item"] = {
            **_key(table, key),
            "v": {"N": str(rng.randrange(40))},
            "body": {"S": "x" * rng.randrange(50)},
        }
        if rng.random() < 0.7:
            op["Item"]["g"] = {"S": f"g{rng.randrange(4)}"}
    else:
        op["Key"] = _key(table, key)
    if kind == "Update":
        expression, values = rng.choices(
            [
                ("SET v = if_not_exists(v, :zero) + :d, g = :g", {":zero": {"N": "0"}, ":d": {"N": "3"}}),
                ("REMOVE g SET body = :b", {":b": {"S": "updated"}}),
                ("ADD hits :one", {":one": {"N": "1"}}),
                ("SET v = v + :d", {":d": {"N": "1"}}),  # a ValidationException when v is missing
            ],
            weights=[4, 4, 4, 1],
        )[0]
        if ":g" in expression:
            values[":g"] = {"S": f"g{rng.randrange(4)}"}
        op["UpdateExpression"] = expression
    if kind == "ConditionCheck" or rng.random() < 0.3:
        condition, condition_values = rng.choice(CONDITIONS)
        op["ConditionExpression"] = condition
        values = {**values, **condition_values}
        if rng.random() < 0.5:
            op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    if values:
        op["ExpressionAttributeValues"] = values
    return {kind: op}


def _random_transaction(rng: random.Random) -> list[Action]:
    targets = [(HASH_TABLE, k) for k in HASH_KEYS] + [(RANGE_TABLE, k) for k in RANGE_KEYS]
    actions = [_random_action(rng, table, key) for table, key in rng.sample(targets, rng.randint(1, 8))]
    for action in actions:
        if rng.random() < 0.05:  # by ARN: moto restores only tables named by name, and so must the patch
            op = next(iter(action.values()))
            op["TableName"] = f"arn:aws:dynamodb:{REGION}:{DEFAULT_ACCOUNT_ID}:table/{op['TableName']}"
    roll = rng.random()
    position = rng.randrange(len(actions) + 1)
    if roll < 0.05:  # two actions on one item
        actions.insert(position, copy.deepcopy(actions[rng.randrange(len(actions))]))
    elif roll < 0.08:  # an item over 400 KB
        big = {"pk": {"S": "big"}, "body": {"S": "x" * 410_000}}
        actions.insert(position, {"Put": {"TableName": HASH_TABLE, "Item": big}})
    elif roll < 0.11:  # a table that does not exist
        kind = rng.choice(["Delete", "ConditionCheck", "Put"])
        op: dict[str, Any] = {"TableName": MISSING_TABLE, "Key": {"pk": {"S": "k1"}}}
        if kind == "ConditionCheck":
            op["ConditionExpression"] = "attribute_exists(pk)"
        if kind == "Put":
            op = {"TableName": MISSING_TABLE, "Item": {"pk": {"S": "k1"}}}
        actions.insert(position, {kind: op})
    elif roll < 0.15:  # a key moto cannot hash (a cancellation reason "InvalidOperation")
        bad_key = {"pk": {"S": "p0"}, "sk": {"N": "not-a-number"}}
        actions.insert(position, {"Delete": {"TableName": RANGE_TABLE, "Key": bad_key}})
    elif roll < 0.17:  # two operations in one TransactItem (moto raises without restoring)
        actions.insert(
            position,
            {
                "Put": {"TableName": HASH_TABLE, "Item": {"pk": {"S": "two-ops"}}},
                "Delete": {"TableName": HASH_TABLE, "Key": {"pk": {"S": "k0"}}},
            },
        )
    return actions


def _run(transactions: list[list[Action]]) -> tuple[list[Any], dict[str, Any]]:
    """Each transaction's outcome with moto's item layout and stream length after it; the final state."""
    with mock_aws():
        client = _client()
        _create_tables(client)
        _seed(client)
        outcomes = []
        for actions in transactions:
            outcome = _outcome(client, actions)
            layout = (_layout(HASH_TABLE), _layout(RANGE_TABLE), len(_stream_records(RANGE_TABLE)))
            outcomes.append((outcome, layout))
        return outcomes, _state(client)


# --- tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_patched_moto_is_equivalent_to_moto_on_random_transactions(seed: int, moto_as_shipped: None) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible sequence, not a secret
    transactions = [_random_transaction(rng) for _ in range(150)]

    expected_outcomes, expected_state = _run(transactions)
    with fast_transactions():
        outcomes, state = _run(transactions)

    assert not fast_transactions_installed()
    for index, (got, expected) in enumerate(zip(outcomes, expected_outcomes, strict=True)):
        assert got == expected, f"transaction {index}: {transactions[index]}"
    assert state == expected_state
    # The sequence exercised what it is meant to exercise.
    responses = [outcome for outcome, _ in expected_outcomes]
    codes = [o["Error"]["Code"] if o else "OK" for o in responses]
    assert {"OK", "TransactionCanceledException", "ValidationException"} <= set(codes)
    reasons = [r for o in responses if o and o["Reasons"] for r in o["Reasons"]]
    assert {"None", "ConditionalCheckFailed", "ResourceNotFoundException", "InvalidOperation"} <= {
        r["Code"] for r in reasons
    }
    assert any("Item" in r for r in reasons)


def _touching_everything(table: str, existing: list[Any], missing: list[Any], fail_at: int) -> list[Action]:
    """Put over an existing item, Put a new one, Update an existing and a missing one (which would create
    it), Delete an existing one, and a ConditionCheck that fails, moved to position `fail_at`."""
    actions: list[Action] = [
        {"Put": {"TableName": table, "Item": {**_key(table, existing[0]), "v": {"N": "100"}}}},
        {"Put": {"TableName": table, "Item": {**_key(table, missing[0]), "v": {"N": "101"}}}},
        {
            "Update": {
                "TableName": table,
                "Key": _key(table, existing[1]),
                "UpdateExpression": "SET v = v + :d, extra = :e",
                "ExpressionAttributeValues": {":d": {"N": "5"}, ":e": {"S": "e"}},
            }
        },
        {
            "Update": {
                "TableName": table,
                "Key": _key(table, missing[1]),
                "UpdateExpression": "SET v = :v",
                "ExpressionAttributeValues": {":v": {"N": "7"}},
            }
        },
        {"Delete": {"TableName": table, "Key": _key(table, existing[2])}},
    ]
    check = {
        "ConditionCheck": {
            "TableName": table,
            "Key": _key(table, existing[3]),
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    actions.insert(fail_at, check)
    return actions


@pytest.mark.parametrize("fail_at", [0, 3, 5])
@pytest.mark.parametrize(
    ("table", "existing", "missing"),
    [
        (HASH_TABLE, ["k1", "k2", "k3", "k4"], ["k90", "k91"]),
        # p9 has no hash bucket at all, ("p0", 2) is a missing item in an existing bucket.
        (RANGE_TABLE, [("p0", 0), ("p1", 1), ("p2", 0), ("p3", 1)], [("p9", 0), ("p0", 2)]),
    ],
)
def test_a_cancelled_transaction_leaves_every_item_as_it_was(
    mode: str, table: str, existing: list[Any], missing: list[Any], fail_at: int
) -> None:
    with mock_aws():
        client = _client()
        _create_tables(client)
        _seed(client)
        before = _state(client)
        checked = client.get_item(TableName=table, Key=_key(table, existing[3]))["Item"]

        outcome = _outcome(client, _touching_everything(table, existing, missing, fail_at))

        assert outcome is not None
        assert outcome["Error"]["Code"] == "TransactionCanceledException"
        reasons = outcome["Reasons"]
        assert [r["Code"] for r in reasons] == [
            "ConditionalCheckFailed" if i == fail_at else "None" for i in range(6)
        ]
        assert reasons[fail_at]["Item"] == checked
        assert _state(client) == before  # touched and untouched items, GSI, stream, buckets, order
        for key in missing:  # (after the layout check: moto's GetItem adds an empty hash bucket)
            assert "Item" not in client.get_item(TableName=table, Key=_key(table, key))


def test_a_successful_transaction_applies_every_action(mode: str) -> None:
    with mock_aws():
        client = _client()
        _create_tables(client)
        _seed(client)
        actions = _touching_everything(HASH_TABLE, ["k1", "k2", "k3", "k4"], ["k90", "k91"], fail_at=5)
        actions[5]["ConditionCheck"]["ConditionExpression"] = "attribute_exists(pk)"

        assert _outcome(client, actions) is None

        def item(key: str) -> dict[str, Any] | None:
            found: dict[str, Any] | None = client.get_item(
                TableName=HASH_TABLE, Key=_key(HASH_TABLE, key)
            ).get("Item")
            return found

        assert item("k1") == {"pk": {"S": "k1"}, "v": {"N": "100"}}
        assert item("k90") == {"pk": {"S": "k90"}, "v": {"N": "101"}}
        assert item("k2") == {"pk": {"S": "k2"}, "v": {"N": "7"}, "extra": {"S": "e"}}
        assert item("k91") == {"pk": {"S": "k91"}, "v": {"N": "7"}}
        assert item("k3") is None
        assert item("k4") == {"pk": {"S": "k4"}, "v": {"N": "4"}}


def _puts(keys: list[str]) -> list[Action]:
    return [{"Put": {"TableName": HASH_TABLE, "Item": {"pk": {"S": key}}}} for key in keys]


VALIDATION_CASES: dict[str, tuple[list[Action], str, str]] = {
    "more than 100 actions": (
        _puts([f"n{i}" for i in range(101)]),
        "ValidationException",
        "Member must have length less than or equal to 100",
    ),
    "two actions on one item": (
        [*_puts(["n1", "k1"]), {"Delete": {"TableName": HASH_TABLE, "Key": {"pk": {"S": "k1"}}}}],
        "ValidationException",
        "Transaction request cannot include multiple operations on one item",
    ),
    "an item over 400 KB": (
        [
            *_puts(["n1", "n2"]),
            {"Put": {"TableName": HASH_TABLE, "Item": {"pk": {"S": "n3"}, "b": {"S": "x" * 410_000}}}},
        ],
        "ValidationException",
        "Item size has exceeded the maximum allowed size",
    ),
    "an update of a missing attribute": (
        [
            *_puts(["n1"]),
            {
                "Update": {
                    "TableName": HASH_TABLE,
                    "Key": {"pk": {"S": "n2"}},
                    "UpdateExpression": "SET v = v + :d",
                    "ExpressionAttributeValues": {":d": {"N": "1"}},
                }
            },
        ],
        "ValidationException",
        "The provided expression refers to an attribute that does not exist in the item",
    ),
    "a Put to a missing table": (
        [*_puts(["n1"]), {"Put": {"TableName": MISSING_TABLE, "Item": {"pk": {"S": "n2"}}}}],
        "ResourceNotFoundException",
        "Requested resource not found",
    ),
}


@pytest.mark.parametrize("case", VALIDATION_CASES)
def test_validation_errors_still_happen_and_write_nothing(mode: str, case: str) -> None:
    actions, code, message = VALIDATION_CASES[case]
    with mock_aws():
        client = _client()
        _create_tables(client)
        _seed(client)
        before = _state(client)

        outcome = _outcome(client, actions)

        assert outcome is not None
        assert outcome["Error"]["Code"] == code
        assert message in outcome["Error"]["Message"]
        assert outcome["Reasons"] is None
        assert _state(client) == before


def test_a_missing_table_in_a_condition_check_cancels_with_its_own_reason(mode: str) -> None:
    with mock_aws():
        client = _client()
        _create_tables(client)
        _seed(client)
        before = _state(client)
        check = {
            "TableName": MISSING_TABLE,
            "Key": {"pk": {"S": "k1"}},
            "ConditionExpression": "attribute_exists(pk)",
        }

        outcome = _outcome(client, [*_puts(["n1", "k1"]), {"ConditionCheck": check}])

        assert outcome is not None
        assert outcome["Error"]["Code"] == "TransactionCanceledException"
        assert [r["Code"] for r in outcome["Reasons"]] == ["None", "None", "ResourceNotFoundException"]
        assert _state(client) == before


@pytest.mark.server
def test_the_patch_reaches_an_embedded_moto_server(
    moto_server: EmbeddedAws, moto_as_shipped: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_table_copies(table: Table, memo: dict[int, Any]) -> Table:
        raise AssertionError("a whole table was deep-copied")

    monkeypatch.setattr(Table, "__deepcopy__", no_table_copies, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    client = _client(moto_server.endpoint_url)
    prefix = "fm-server-"
    _create_tables(client, prefix)
    try:
        _seed(client, prefix)
        table = prefix + HASH_TABLE
        before = _scan(client, table)
        with fast_transactions():
            cancelled = _outcome(
                client, _touching_everything(table, ["k1", "k2", "k3", "k4"], ["k90", "k91"], 5)
            )
            assert _scan(client, table) == before
            applied = _outcome(client, [{"Put": {"TableName": table, "Item": {"pk": {"S": "k90"}}}}])

        assert cancelled is not None
        assert cancelled["Error"]["Code"] == "TransactionCanceledException"
        assert applied is None
        assert client.get_item(TableName=table, Key={"pk": {"S": "k90"}})["Item"] == {"pk": {"S": "k90"}}
    finally:
        for name in (HASH_TABLE, RANGE_TABLE):
            client.delete_table(TableName=prefix + name)


def test_install_is_idempotent_and_the_context_manager_restores_what_it_found(moto_as_shipped: None) -> None:
    shipped = DynamoDBBackend.transact_write_items

    with fast_transactions():
        assert fast_transactions_installed()
        assert moto_models.copy is not copy
    assert DynamoDBBackend.transact_write_items is shipped
    assert moto_models.copy is copy

    install_fast_transactions()
    install_fast_transactions()
    patched = DynamoDBBackend.transact_write_items
    with fast_transactions():
        pass
    assert DynamoDBBackend.transact_write_items is patched  # a permanent install survives the block

    uninstall_fast_transactions()
    uninstall_fast_transactions()
    assert DynamoDBBackend.transact_write_items is shipped
    assert moto_models.copy is copy


def test_tables_are_still_deep_copied_outside_a_transaction(moto_as_shipped: None) -> None:
    with mock_aws(), fast_transactions():
        client = _client()
        _create_tables(client)
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION].tables[HASH_TABLE]

        assert moto_models.copy.deepcopy(table) is not table
        client.create_backup(TableName=HASH_TABLE, BackupName="fm-backup")


def test_the_guard_names_what_changed_in_moto() -> None:
    check_moto_internals()

    with pytest.raises(MotoInternalsChanged, match=r"table\.put_item.*MOTO_FINGERPRINTS"):
        check_moto_internals({**MOTO_FINGERPRINTS, "table.put_item": "0" * 64})


def test_the_local_extra_pins_the_moto_the_patches_were_reviewed_against() -> None:
    import tomllib  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from outbox.local.fast_moto import REVIEWED_MOTO_VERSION  # noqa: PLC0415

    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["optional-dependencies"]["local"] == [
        f"moto[server]=={REVIEWED_MOTO_VERSION}"
    ]
