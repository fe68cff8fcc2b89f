"""Serving and device deployment: Triton model repositories (triton.py)."""
