"""Django models of the first group of benchmark tables (the tables exist already: ``managed = False``)."""

from __future__ import annotations

from typing import Any

from django.db import models


class T0(models.Model):
    """A group's first table (no parent)."""

    id = models.IntegerField(primary_key=True)
    parent_id = models.IntegerField(null=True)
    name = models.CharField(max_length=64, db_index=True)
    score = models.IntegerField()

    class Meta:
        managed = False
        db_table = "t0"


class T1(models.Model):
    """A child of `T0`."""

    id = models.IntegerField(primary_key=True)
    parent = models.ForeignKey(T0, models.DO_NOTHING, db_column="parent_id", related_name="+")
    name = models.CharField(max_length=64)
    score = models.IntegerField()

    class Meta:
        managed = False
        db_table = "t1"


class T2(models.Model):
    """A child of `T1`."""

    id = models.IntegerField(primary_key=True)
    parent = models.ForeignKey(T1, models.DO_NOTHING, db_column="parent_id", related_name="+")
    name = models.CharField(max_length=64)
    score = models.IntegerField()

    class Meta:
        managed = False
        db_table = "t2"


MODELS: dict[str, Any] = {"t0": T0, "t1": T1, "t2": T2}


def join(parent_id: int) -> list[tuple[str, str, str]]:
    """The names along t0 -> t1 -> t2 below parent ``parent_id``: the ORM's join over the three tables."""
    rows = T2.objects.filter(parent__parent_id=parent_id).values_list(
        "parent__parent__name", "parent__name", "name"
    )
    return list(rows)
