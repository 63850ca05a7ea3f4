"""The SQLite journal and the job files: journal, records, recovery, storage."""
