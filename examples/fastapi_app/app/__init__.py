"""A small FastAPI + SQLAlchemy ORM app: users who log in and own items, laid out as FastAPI's full-stack template."""
