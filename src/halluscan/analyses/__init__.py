"""The study's analyses: pure maths on arrays and records, each returning a frozen record."""
