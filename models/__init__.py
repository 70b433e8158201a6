"""Model catalogue and weight resolution (folder ``models/``; weights live in the git-ignored ``models/weights/``)."""
