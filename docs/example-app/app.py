"""A team's own CDK app with the outbox in it: `OutboxConstruct` (tables, queue, relay, schedule) and the
team's own function, which writes an order and its outbox message in one transaction.

    pip install 'dynamodb-sqs-outbox[cdk]'
    cdk synth --app "python app.py"      # or: python app.py (writes to $CDK_OUTDIR or a temp folder)

`tests/test_install.py` installs the built wheel into a fresh virtualenv and synthesizes this very file
from a folder outside the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from outbox.cdk import ARCHITECTURE, RUNTIME, OutboxConstruct, lambda_code

HERE = Path(__file__).resolve().parent


class OrdersStack(cdk.Stack):
    def __init__(self, scope: Construct, id: str, **kwargs: Any) -> None:
        super().__init__(scope, id, **kwargs)
        outbox = OutboxConstruct(self, "Outbox")  # defaults: standard queue, 8 shards, tables retained
        orders = dynamodb.TableV2(
            self,
            "Orders",
            partition_key=dynamodb.Attribute(name="order_id", type=dynamodb.AttributeType.STRING),
        )
        place_order = lambda_.Function(
            self,
            "PlaceOrder",
            runtime=RUNTIME,  # the runtime and architecture the outbox's dependencies are fetched for
            architecture=ARCHITECTURE,
            handler="orders.handler",
            code=lambda_code(HERE / "orders_src"),  # your folder + the installed outbox, one asset
            environment={**outbox.environment, "ORDERS_TABLE": orders.table_name},
        )
        orders.grant(place_order, "dynamodb:PutItem")  # the order Put of the transaction
        outbox.grant_enqueue(place_order)  # the message and entry Puts


app = cdk.App()
OrdersStack(app, "Orders", env=cdk.Environment(account="123456789012", region="us-east-1"))
app.synth()
