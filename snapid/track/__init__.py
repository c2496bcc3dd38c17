"""The workspace database: SQLAlchemy 2 tables and keyword-only functions. No SQL anywhere else."""
