"""Schema files that define routines: triggers and functions whose bodies hold ``;`` build on every backend."""

from __future__ import annotations

import pytest

from ..backends import Backend, sibling_url

pytestmark = pytest.mark.backends("sqlite-file", "postgresql", "mysql")

TABLES = """
CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL);
CREATE TABLE audit (item_id INTEGER, note VARCHAR(40));
"""
# Each backend's own dialect, as its documentation writes a trigger whose body has two statements.
ROUTINES = {
    "sqlite": """
CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW WHEN NEW.qty > 0 BEGIN
  INSERT INTO audit VALUES (NEW.id, 'qty; ' || NEW.qty);
  UPDATE items SET qty = CASE WHEN qty > 5 THEN 5 ELSE qty END WHERE id = NEW.id;
END;
""",
    "postgresql": """
CREATE FUNCTION capped(q integer) RETURNS integer LANGUAGE sql
BEGIN ATOMIC
  SELECT CASE WHEN q > 5 THEN 5 ELSE q END;
END;
CREATE FUNCTION items_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit VALUES (NEW.id, 'qty; ' || NEW.qty);
  UPDATE items SET qty = capped(qty) WHERE id = NEW.id;
  RETURN NULL;
END;
$$;
CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW WHEN (NEW.qty > 0)
  EXECUTE FUNCTION items_audit();
""",
    # A MySQL trigger may not update its own table: the capping happens before the insert.
    "mysql": """
CREATE TRIGGER items_cap BEFORE INSERT ON items FOR EACH ROW
BEGIN
  IF NEW.qty > 5 THEN SET NEW.qty = 5; END IF;
END;
DELIMITER //
CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW
BEGIN
  INSERT INTO audit VALUES (NEW.id, CONCAT('qty; ', NEW.qty));
END //
DELIMITER ;
""",
}
TESTS = """
def test_the_trigger_fires(db_session):
    db_session.execute("INSERT INTO items (id, qty) VALUES (1, 9)")
    assert db_session.fetchall("SELECT id, qty FROM items") == [(1, 5)]
    assert db_session.fetchall("SELECT item_id, note FROM audit") == [(1, "qty; {qty}")]
"""


def test_a_schema_with_routines_builds_and_its_triggers_fire(
    pytester: pytest.Pytester, backend: Backend
) -> None:
    pytester.makefile(".sql", schema=TABLES + ROUTINES[backend.family])
    ini = ["[pytest]", "txscope_schema = schema.sql", "addopts = -p no:randomly"]
    if backend.family != "sqlite":
        ini.append(f"txscope_url = {sibling_url(backend, 'routines').partition('?')[0]}")
    pytester.makefile(".ini", pytest="\n".join(ini))
    # MySQL's trigger saw the row before it was capped: it notes 5 too; the others note the 9 inserted.
    pytester.makepyfile(test_it=TESTS.format(qty=5 if backend.family == "mysql" else 9))
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
