"""Per-response scanning: a scanner (model I/O), its scoring maths and attention maths."""

from halluscan.scan.scanner import Scanner
from halluscan.scan.scoring import token_labels

__all__ = ["Scanner", "token_labels"]
