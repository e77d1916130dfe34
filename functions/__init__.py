"""Trigger adapters: read the trigger input, call the engine in shared/, write the output."""
