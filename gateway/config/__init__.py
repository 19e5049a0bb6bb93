"""Site configuration: pydantic models, YAML loading with line numbers, and technician-readable errors."""
