"""Pure domain logic: no I/O, no clock reads, no environment. Values in, values out."""
