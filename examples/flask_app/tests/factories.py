"""factory_boy factories that write into the running test's sandbox."""

from __future__ import annotations

import factory
from shop.models import Customer, Order

from pytest_txscope.factories import SandboxModelFactory


class CustomerFactory(SandboxModelFactory):
    class Meta:
        model = Customer

    email = factory.Sequence(lambda n: f"customer{n}@example.com")


class OrderFactory(SandboxModelFactory):
    class Meta:
        model = Order

    customer = factory.SubFactory(CustomerFactory)
    total = 1250
