"""Model catalogue and weight resolution.

Folder ``models/``; the weights themselves live in the git-ignored ``models/weights/``.
"""
