"""A Docker engine: the one client of its API (`client.py`) and its disk budget (`disk.py`)."""
