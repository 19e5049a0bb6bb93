"""One folder per protocol; each folder's __init__.py declares DRIVER = DriverSpec(...)."""
