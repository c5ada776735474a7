#!/usr/bin/env python3
"""Executes a notebook headless (nbclient, the kernel `python3`) and fails on any cell error;
the committed file is never rewritten (its outputs stay stripped).

    run_notebook.py NOTEBOOK.ipynb [TIMEOUT_S]"""
import sys

import nbformat
from nbclient import NotebookClient

path = sys.argv[1]
timeout = int(sys.argv[2]) if len(sys.argv) > 2 else 300
notebook = nbformat.read(path, as_version=4)
if any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"):
    sys.exit(f"{path}: commit the notebook without outputs")
NotebookClient(notebook, timeout=timeout, kernel_name="python3").execute()
cells = sum(cell.cell_type == "code" for cell in notebook.cells)
print(f"{path}: {cells} code cells ran without an error")
