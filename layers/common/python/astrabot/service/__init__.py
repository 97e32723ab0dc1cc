"""Use cases: each handler calls one function here, which combines domain logic and adapters."""
