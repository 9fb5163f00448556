"""Question sets: the built-in world-facts set and user CSV/JSONL files."""

from halluscan.data.files import load_dataset, read_table
from halluscan.data.select import select_questions
from halluscan.data.worldfacts import build_world_facts

__all__ = ["build_world_facts", "load_dataset", "read_table", "select_questions"]
