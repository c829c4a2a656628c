"""Property-based fuzzing of the live server against openapi.yaml."""
