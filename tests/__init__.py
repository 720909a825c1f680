"""The project's tests, by what they check:

- ``unit/``: one module called directly: URLs and engine construction, SQL rewriting, table inspection and
  restore, provisioning of test databases, and this suite's own helpers (the environment of generated runs,
  the database of each pytest-xdist worker);
- ``contract/``: the core API on every backend: transactions, sessions and the pool, the current session per
  thread and task, the sandbox and its threads, per-backend quirks, and state machines checking them against
  models;
- ``plugin/``: the pytest plugin, run as users run it on generated projects: its fixtures, markers and options,
  and whole suites in random order, on pytest-xdist workers, with reused databases;
- ``integrations/``: SQLAlchemy, factory_boy and Hypothesis under the plugin;
- ``faults/``: faults injected for real (lost connections, runtime faults), bad input, no password ever
  printed, and the API-misuse fuzz.

Shared: ``conftest.py`` (the ``backend``, ``engine`` and ``peer`` fixtures, and ``pytester``), ``backends.py``
(how to reach each backend), ``generated_runs.py`` (the environment of generated pytest runs) and
``password_scan.py`` (fails any test that prints the test password).
"""
