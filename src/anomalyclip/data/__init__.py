"""Reading the on-disk formats, sampling training items, streaming test videos, the demo data."""
