"""A small async FastAPI + SQLAlchemy asyncio ORM app: users who log in and own items."""
