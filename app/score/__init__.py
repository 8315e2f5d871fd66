"""Batch scoring of CSV and Parquet files: ``python -m app.score INPUT OUTPUT``."""
