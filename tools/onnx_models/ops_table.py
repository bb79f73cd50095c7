#!/usr/bin/env python3
"""Rewrites the operator table of docs/ONNX.md from `OPERATORS` in src/import/lower.rs
(tests/onnx_import.rs fails while the two differ).

    python3 tools/onnx_models/ops_table.py
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
src = open(os.path.join(ROOT, "src/import/lower.rs")).read()
start = src.index("pub const OPERATORS")
table = src[start:src.index("\n];", start)]
rows = re.findall(r'\(\s*"([A-Za-z0-9]+)",\s*"((?:[^"\\]|\\.)*)",?\s*\)', table)
doc_path = os.path.join(ROOT, "docs/ONNX.md")
doc = open(doc_path).read()
head = "| op | what it becomes |\n|---|---|\n"
a = doc.index(head) + len(head)
b = doc.index("\n\n", a)
doc = doc[:a] + "\n".join(f"| `{op}` | {note} |" for op, note in rows) + doc[b:]
open(doc_path, "w").write(doc)
print(f"{len(rows)} operators")
