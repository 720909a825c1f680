-- Built once per test run by pytest-txscope (txscope_schema in pytest.ini).
CREATE TABLE customers (id INTEGER PRIMARY KEY, email VARCHAR(100) NOT NULL UNIQUE);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    total INTEGER NOT NULL
);
