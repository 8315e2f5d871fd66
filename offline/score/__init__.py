"""Batch scoring of CSV and Parquet files: ``python -m app.score INPUT OUTPUT`` (one file, in
this process), or ``--engine ray INPUT_DIR OUTPUT_DIR`` (a folder of files, on Ray actors)."""
