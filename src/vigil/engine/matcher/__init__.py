"""Compile-once matching structures built from parsed signatures."""
